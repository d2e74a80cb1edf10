import Testing

@testable import BOSHCore

@Suite("Constant-time secret comparison")
struct SecretComparisonTests {
    @Test(
        "equal only when the bytes are equal, whatever the lengths",
        arguments: [
            ("s3cret-token", "s3cret-token", true),
            ("", "", true),
            ("s3cret-tokem", "s3cret-token", false),
            ("S3cret-token", "s3cret-token", false),
            ("s3cret", "s3cret-token", false),
            ("s3cret-token-and-more", "s3cret-token", false),
            ("", "s3cret-token", false),
            ("s3cret-token", "", false),
            ("s3cret-token\u{0}", "s3cret-token", false),
            ("pässwörd", "pässwörd", true),
            ("pässwörd", "passwort", false),
        ]
    )
    func matches(offered: String, expected: String, equal: Bool) {
        #expect(SecretComparison.matches(offered, expected) == equal)
        #expect(SecretComparison.matches(Array(offered.utf8), Array(expected.utf8)) == equal)
    }

    @Test("a substring (as cut from an Authorization header) compares like a string")
    func substring() {
        let header = "Bearer s3cret-token  "
        #expect(SecretComparison.matches(header.dropFirst(7).prefix(12), "s3cret-token"))
        #expect(!SecretComparison.matches(header.dropFirst(7), "s3cret-token"))
    }

    @Test("agrees with == on many pairs of different lengths")
    func agreesWithEquality() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            let a = (0..<Int.random(in: 0...4, using: &generator)).map { _ in UInt8.random(in: 0...2, using: &generator) }
            let b = (0..<Int.random(in: 0...4, using: &generator)).map { _ in UInt8.random(in: 0...2, using: &generator) }
            #expect(SecretComparison.matches(a, b) == (a == b), "\(a) vs \(b)")
        }
    }
}
