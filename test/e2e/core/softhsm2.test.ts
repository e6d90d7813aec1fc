import { backends } from './backends.js';
import { runCore } from './suite.js';

runCore(backends.softhsm2);
