"""
The core, lifecycle, asymmetric and import flows of AWS KMS through boto3 (the AWS SDK for
Python) against a running p11kms. Driven by test/e2e/boto3.test.ts, which starts the daemon and
passes P11KMS_ENDPOINT and credentials in the environment. Prints one JSON object: the flows
that ran and every check's outcome; exits non-zero on the first failed check.
"""
import base64
import json
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

kms = boto3.client(
    "kms",
    endpoint_url=os.environ["P11KMS_ENDPOINT"],
    region_name=os.environ["AWS_REGION"],
    aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
    aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    config=Config(retries={"max_attempts": 1}),
)
ran = []
skipped = []


def check(name, ok):
    ran.append(name)
    if not ok:
        print(json.dumps({"failed": name, "ran": ran}))
        sys.exit(1)


def error_code(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


def has(op):
    """Operations newer than the installed botocore are skipped, and reported as skipped."""
    if hasattr(kms, op):
        return True
    skipped.append(op)
    return False


def core():
    key = kms.create_key(Description="boto3 core", Tags=[{"TagKey": "sdk", "TagValue": "boto3"}])["KeyMetadata"]
    check("create_key", key["KeyState"] == "Enabled" and key["KeySpec"] == "SYMMETRIC_DEFAULT")
    kid = key["KeyId"]
    kms.create_alias(AliasName="alias/boto3-core", TargetKeyId=kid)
    check("describe_key by alias", kms.describe_key(KeyId="alias/boto3-core")["KeyMetadata"]["KeyId"] == kid)
    ctx = {"purpose": "boto3"}
    enc = kms.encrypt(KeyId="alias/boto3-core", Plaintext=b"hello boto3", EncryptionContext=ctx)
    check("encrypt", enc["KeyId"] == key["Arn"] and enc["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT")
    dec = kms.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext=ctx)
    check("decrypt", dec["Plaintext"] == b"hello boto3" and dec["KeyId"] == key["Arn"])
    check("decrypt with wrong context", error_code(kms.decrypt, CiphertextBlob=enc["CiphertextBlob"]) == "InvalidCiphertextException")
    dk = kms.generate_data_key(KeyId=kid, KeySpec="AES_256")
    check("generate_data_key", len(dk["Plaintext"]) == 32 and kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"])
    other = kms.create_key()["KeyMetadata"]
    re = kms.re_encrypt(CiphertextBlob=enc["CiphertextBlob"], SourceEncryptionContext=ctx, DestinationKeyId=other["KeyId"])
    check("re_encrypt", re["SourceKeyId"] == key["Arn"] and re["KeyId"] == other["Arn"])
    check("decrypt re-encrypted", kms.decrypt(CiphertextBlob=re["CiphertextBlob"])["Plaintext"] == b"hello boto3")
    check("generate_random", len(kms.generate_random(NumberOfBytes=48)["Plaintext"]) == 48)
    check("list_resource_tags", kms.list_resource_tags(KeyId=kid)["Tags"] == [{"TagKey": "sdk", "TagValue": "boto3"}])
    aliases = [a["AliasName"] for a in kms.get_paginator("list_aliases").paginate().build_full_result()["Aliases"]]
    check("list_aliases paginator", "alias/boto3-core" in aliases)
    keys = [k["KeyId"] for k in kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 1}).build_full_result()["Keys"]]
    check("list_keys paginator", kid in keys and other["KeyId"] in keys)
    check("not found", error_code(kms.describe_key, KeyId="alias/none") == "NotFoundException")
    check("validation", error_code(kms.encrypt, KeyId=kid, Plaintext=b"x" * 4097) == "ValidationException")


def lifecycle():
    kid = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=kid)
    check("disabled refuses", error_code(kms.encrypt, KeyId=kid, Plaintext=b"x") == "DisabledException")
    kms.enable_key(KeyId=kid)
    kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=180)
    status = kms.get_key_rotation_status(KeyId=kid)
    check("rotation status", status["KeyRotationEnabled"] is True and status.get("RotationPeriodInDays", 180) == 180)
    blob = kms.encrypt(KeyId=kid, Plaintext=b"before rotation")["CiphertextBlob"]
    if has("rotate_key_on_demand"):
        kms.rotate_key_on_demand(KeyId=kid)
        rotations = kms.list_key_rotations(KeyId=kid)["Rotations"]
        check("rotate_key_on_demand", len(rotations) == 1 and rotations[0]["RotationType"] == "ON_DEMAND")
    check("old ciphertext still decrypts", kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before rotation")
    deletion = kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    check("schedule_key_deletion", deletion["KeyState"] == "PendingDeletion")
    check("pending deletion refuses", error_code(kms.encrypt, KeyId=kid, Plaintext=b"x") == "KMSInvalidStateException")
    kms.cancel_key_deletion(KeyId=kid)
    check("cancel_key_deletion", kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Disabled")
    if has("get_key_last_usage"):
        usage = kms.get_key_last_usage(KeyId=kid)
        check("get_key_last_usage", usage["KeyLastUsage"]["Operation"] == "Decrypt")


def asymmetric():
    rsa = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    pub = serialization.load_der_public_key(kms.get_public_key(KeyId=rsa)["PublicKey"])
    sig = kms.sign(KeyId=rsa, Message=b"signed by p11kms", SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]
    pub.verify(sig, b"signed by p11kms", padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    check("rsa sign, verified by cryptography", True)
    check("verify", kms.verify(KeyId=rsa, Message=b"signed by p11kms", Signature=sig, SigningAlgorithm="RSASSA_PSS_SHA_256")["SignatureValid"])
    check("verify tampered", error_code(kms.verify, KeyId=rsa, Message=b"other", Signature=sig, SigningAlgorithm="RSASSA_PSS_SHA_256") == "KMSInvalidSignatureException")
    ecc = kms.create_key(KeySpec="ECC_SECG_P256K1", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    ecpub = serialization.load_der_public_key(kms.get_public_key(KeyId=ecc)["PublicKey"])
    esig = kms.sign(KeyId=ecc, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    ecpub.verify(esig, b"m", ec.ECDSA(hashes.SHA256()))
    check("secp256k1 sign, verified by cryptography", True)
    enc = kms.create_key(KeySpec="RSA_3072", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    encpub = serialization.load_der_public_key(kms.get_public_key(KeyId=enc)["PublicKey"])
    ct = encpub.encrypt(b"for the key", padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    check("rsa decrypt", kms.decrypt(KeyId=enc, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")["Plaintext"] == b"for the key")
    mac = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    tag = kms.generate_mac(KeyId=mac, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
    check("verify_mac", kms.verify_mac(KeyId=mac, Message=b"m", Mac=tag, MacAlgorithm="HMAC_SHA_256")["MacValid"])
    pair = kms.generate_data_key_pair(KeyId=kms.create_key()["KeyMetadata"]["KeyId"], KeyPairSpec="ECC_NIST_P256")
    check("generate_data_key_pair", serialization.load_der_private_key(pair["PrivateKeyPlaintext"], None) is not None)


def imported():
    key = kms.create_key(Origin="EXTERNAL", Description="boto3 import")["KeyMetadata"]
    check("external key pending import", key["KeyState"] == "PendingImport")
    params = kms.get_parameters_for_import(KeyId=key["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_1", WrappingKeySpec="RSA_2048")
    wrapping = serialization.load_der_public_key(params["PublicKey"])
    material = os.urandom(32)
    wrapped = wrapping.encrypt(material, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    kms.import_key_material(KeyId=key["KeyId"], ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped,
                            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    check("imported key enabled", kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled")
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"under imported material")["CiphertextBlob"]
    check("decrypt with imported material", kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"under imported material")
    kms.delete_imported_key_material(KeyId=key["KeyId"])
    check("material deleted", kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "PendingImport")
    check("decrypt after deletion", error_code(kms.decrypt, CiphertextBlob=blob) == "KMSInvalidStateException")


for flow in (core, lifecycle, asymmetric, imported):
    flow()
print(json.dumps({"ok": True, "ran": ran, "skipped": skipped, "boto3": boto3.__version__}))
