/** A sealed value: the IV actually used (whoever chose it) and ciphertext ‖ tag (or MAC). */
export interface Sealed {
  iv: Buffer;
  sealed: Buffer;
}
