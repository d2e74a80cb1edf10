import Crypto

/// Compares a secret someone offers with the configured one (the prebind bearer secret) in time
/// that does not depend on either: not on where they first differ, and not on their lengths.
///
/// Comparing the bytes directly would return early at the first difference, or at a length
/// mismatch, and each leaks what a guesser needs next. Both sides are hashed with SHA-256 instead,
/// and the two 32-byte digests compared with no early exit. Hashing the offered value takes time
/// depending on its length only, which the sender chose; hashing the secret takes the same time
/// on every request.
public enum SecretComparison {
    public static func matches(_ offered: some Collection<UInt8>, _ expected: some Collection<UInt8>) -> Bool {
        let offeredDigest = SHA256.hash(data: Array(offered))
        let expectedDigest = SHA256.hash(data: Array(expected))
        var difference: UInt8 = 0
        for (a, b) in zip(offeredDigest, expectedDigest) {
            difference |= a ^ b
        }
        return difference == 0
    }

    /// The UTF-8 bytes of both, compared as above.
    public static func matches(_ offered: some StringProtocol, _ expected: some StringProtocol) -> Bool {
        Self.matches(offered.utf8, expected.utf8)
    }
}
