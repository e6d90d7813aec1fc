/** One external key id a URI prefix serves, bound to a daemon key (XKS proxy configuration, read by the core's XKS service). */
export interface XksKeyBinding {
  externalKeyId: string;
  /** The daemon key: its key id (UUID) or an alias name (`alias/...`), resolved per request. */
  keyRef: string;
  /** Which XKS operations this binding allows (the spec's encrypt-only / decrypt-only keys). */
  allowEncrypt: boolean;
  allowDecrypt: boolean;
}
