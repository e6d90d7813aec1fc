// Opens a token from a separate process (as an attacker with the PIN would) and reports, for
// every object whose label starts with p11kms:, its class, protection attributes, whether its
// secret value can be read and whether it can be wrapped out. Public keys report whether their
// public value is readable (it should be). Prints JSON.
// usage: node inspect-token.mjs MODULE LABEL PIN [LABEL_PREFIX] [LIBRARY_PARAMETERS]
import pkcs11js from 'pkcs11js';

const [module, label, pin, prefix = 'p11kms:', libraryParameters] = process.argv.slice(2);
const p = new pkcs11js.PKCS11();
p.load(module);
p.C_Initialize(libraryParameters ? { flags: pkcs11js.CKF_OS_LOCKING_OK, libraryParameters } : { flags: pkcs11js.CKF_OS_LOCKING_OK });
const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === label);
const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
p.C_Login(s, pkcs11js.CKU_USER, pin);
p.C_FindObjectsInit(s, []);
const handles = p.C_FindObjects(s, 10000);
p.C_FindObjectsFinal(s);
const bool = (b) => b.length === 1 && b[0] === 1;
const ulong = (b) => (b.length === 8 ? Number(b.readBigUInt64LE()) : b.readUInt32LE());
const CLASSES = { [pkcs11js.CKO_SECRET_KEY]: 'secret', [pkcs11js.CKO_PRIVATE_KEY]: 'private', [pkcs11js.CKO_PUBLIC_KEY]: 'public' };
const KEY_TYPES = {
  [pkcs11js.CKK_AES]: 'AES', [pkcs11js.CKK_RSA]: 'RSA', [pkcs11js.CKK_EC]: 'EC', [pkcs11js.CKK_GENERIC_SECRET]: 'GENERIC_SECRET',
};
/** The attribute holding the secret (or, for a public key, the public value) of each kind of object. */
function valueAttribute(cls, keyType) {
  if (cls === 'public') return keyType === 'RSA' ? pkcs11js.CKA_MODULUS : pkcs11js.CKA_EC_POINT;
  if (cls === 'private' && keyType === 'RSA') return pkcs11js.CKA_PRIVATE_EXPONENT;
  return pkcs11js.CKA_VALUE;
}
const flag = (h, type) => {
  try {
    return bool(p.C_GetAttributeValue(s, h, [{ type }])[0].value);
  } catch {
    return null; // not an attribute of this class of object
  }
};
const objects = [];
for (const h of handles) {
  // Label first: data objects (the audit chain head) have no CKA_ID or CKA_KEY_TYPE.
  const [lbl] = p.C_GetAttributeValue(s, h, [{ type: pkcs11js.CKA_LABEL }]);
  const name = lbl.value.toString();
  if (!name.startsWith(prefix)) continue;
  const [id, clsAttr, keyTypeAttr] = p.C_GetAttributeValue(s, h, [
    { type: pkcs11js.CKA_ID }, { type: pkcs11js.CKA_CLASS }, { type: pkcs11js.CKA_KEY_TYPE },
  ]);
  const cls = CLASSES[ulong(clsAttr.value)] ?? String(ulong(clsAttr.value));
  const keyType = KEY_TYPES[ulong(keyTypeAttr.value)] ?? String(ulong(keyTypeAttr.value));
  let valueRead;
  try {
    p.C_GetAttributeValue(s, h, [{ type: valueAttribute(cls, keyType) }]);
    valueRead = 'READABLE';
  } catch (e) {
    valueRead = e.message;
  }
  let wrapped = 'n/a';
  if (cls !== 'public') {
    try {
      // A second route out of the token: wrapping under a key we control must fail too.
      const kek = p.C_GenerateKey(s, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY }, { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
        { type: pkcs11js.CKA_WRAP, value: true }, { type: pkcs11js.CKA_TOKEN, value: false },
      ]);
      // Every wrap mechanism a module may offer for this (RFC 5649 is 0x210A or 0x210B; plain AES key wrap).
      const tries = [pkcs11js.CKM_AES_KEY_WRAP_PAD, 0x210b, pkcs11js.CKM_AES_KEY_WRAP];
      wrapped = tries.map((mechanism) => {
        try {
          p.C_WrapKey(s, { mechanism }, kek, h, Buffer.alloc(8192));
          return 'WRAPPED';
        } catch (e) {
          return e.message;
        }
      }).find((r) => r === 'WRAPPED') ?? 'REFUSED';
    } catch (e) {
      wrapped = e.message;
    }
  }
  objects.push({
    label: name, id: id.value.toString('hex'), cls, keyType,
    token: flag(h, pkcs11js.CKA_TOKEN), priv: flag(h, pkcs11js.CKA_PRIVATE), sensitive: flag(h, pkcs11js.CKA_SENSITIVE),
    extractable: flag(h, pkcs11js.CKA_EXTRACTABLE), modifiable: flag(h, pkcs11js.CKA_MODIFIABLE),
    neverExtractable: flag(h, pkcs11js.CKA_NEVER_EXTRACTABLE),
    sign: flag(h, pkcs11js.CKA_SIGN), verify: flag(h, pkcs11js.CKA_VERIFY), encrypt: flag(h, pkcs11js.CKA_ENCRYPT),
    decrypt: flag(h, pkcs11js.CKA_DECRYPT), derive: flag(h, pkcs11js.CKA_DERIVE), wrap: flag(h, pkcs11js.CKA_WRAP),
    unwrap: flag(h, pkcs11js.CKA_UNWRAP),
    valueRead, wrapped,
  });
}
p.C_Logout(s);
p.C_Finalize();
process.stdout.write(JSON.stringify(objects));
