// Opens a token from a separate process (as an attacker with the PIN would) and reports, for
// every object whose label starts with p11kms: (or PREFIX), its protection attributes and whether CKA_VALUE
// can be read. Prints JSON. usage: node inspect-token.mjs MODULE LABEL PIN [PREFIX]
import pkcs11js from 'pkcs11js';

const [module, label, pin, prefix = 'p11kms:'] = process.argv.slice(2);
const p = new pkcs11js.PKCS11();
p.load(module);
p.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === label);
const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
p.C_Login(s, pkcs11js.CKU_USER, pin);
p.C_FindObjectsInit(s, []);
const handles = p.C_FindObjects(s, 10000);
p.C_FindObjectsFinal(s);
const bool = (b) => b.length === 1 && b[0] === 1;
const objects = [];
for (const h of handles) {
  // Label first: data objects (the audit chain head) have no CKA_ID.
  const [lbl] = p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_LABEL }]);
  const name = lbl.value.toString();
  if (!name.startsWith(prefix)) continue;
  const [id] = p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_ID }]);
  const attrs = p.C_GetAttributeValue(s, h, [
    { type: pkcs11js.CKA_TOKEN }, { type: pkcs11js.CKA_PRIVATE }, { type: pkcs11js.CKA_SENSITIVE },
    { type: pkcs11js.CKA_EXTRACTABLE }, { type: pkcs11js.CKA_MODIFIABLE }, { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
  ]).map((a) => bool(a.value));
  let valueRead;
  try {
    p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_VALUE }]);
    valueRead = 'READABLE';
  } catch (e) {
    valueRead = e.message;
  }
  let wrapped;
  try {
    // A second route out of the token: wrapping under a key we control must fail too.
    const kek = p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY }, { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_WRAP, value: true }, { type: pkcs11js.CKA_TOKEN, value: false },
    ]);
    p.C_WrapKey(s, { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD }, kek, h, Buffer.alloc(1024));
    wrapped = 'WRAPPED';
  } catch (e) {
    wrapped = e.message;
  }
  const [token, priv, sensitive, extractable, modifiable, neverExtractable] = attrs;
  objects.push({ label: name, id: id.value.toString('hex'), token, priv, sensitive, extractable, modifiable, neverExtractable, valueRead, wrapped });
}
p.C_Logout(s);
p.C_Finalize();
process.stdout.write(JSON.stringify(objects));
