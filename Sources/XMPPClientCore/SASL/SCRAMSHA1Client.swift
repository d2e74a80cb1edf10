import Crypto

/// The client side of SCRAM-SHA-1 (RFC 5802) without channel binding (`n,,`), pure.
///
/// `clientFirst` → server-first (`r=…,s=…,i=…`) → `clientFinal(serverFirst:)` → server-final
/// (`v=…`) → `verify(serverFinal:)`.
public struct SCRAMSHA1Client: Sendable {
    public let username: String
    public let password: String
    public let clientNonce: String
    private var authMessage: String?
    private var serverSignature: [UInt8]?

    public init(username: String, password: String, clientNonce: String = SCRAMSHA1Client.makeNonce()) {
        self.username = username
        self.password = password
        self.clientNonce = clientNonce
    }

    public static func makeNonce() -> String {
        Base64.encode((0..<18).map { _ in UInt8.random(in: 0...255) })
    }

    /// `n=user,r=nonce` (',' and '=' in the name escaped as RFC 5802 §5.1 says).
    var clientFirstBare: String {
        let name = self.username.replacing("=", with: "=3D").replacing(",", with: "=2C")
        return "n=\(name),r=\(self.clientNonce)"
    }

    /// The initial response: GS2 header `n,,` and the bare message.
    public var clientFirst: String { "n,," + self.clientFirstBare }

    public enum Failure: Error, Hashable, Sendable {
        case malformedChallenge
        case nonceMismatch
        case serverSignatureMismatch
    }

    /// The client-final message for the server-first message, with the proof.
    public mutating func clientFinal(serverFirst: String) throws(Failure) -> String {
        var fields: [Character: String] = [:]
        for part in serverFirst.split(separator: ",") {
            guard part.count >= 2, part.dropFirst().first == "=" else { continue }
            fields[part.first!] = String(part.dropFirst(2))
        }
        guard let nonce = fields["r"], let saltText = fields["s"], let salt = Base64.decode(saltText),
            let iterationsText = fields["i"], let iterations = Int(iterationsText), iterations > 0, iterations <= 1_000_000
        else { throw .malformedChallenge }
        guard nonce.hasPrefix(self.clientNonce) else { throw .nonceMismatch }
        let withoutProof = "c=biws,r=\(nonce)"
        let authMessage = "\(self.clientFirstBare),\(serverFirst),\(withoutProof)"
        let salted = Self.pbkdf2(password: Array(self.password.utf8), salt: salt, iterations: iterations)
        let clientKey = Self.hmac(key: salted, Array("Client Key".utf8))
        let storedKey = Array(Insecure.SHA1.hash(data: clientKey))
        let clientSignature = Self.hmac(key: storedKey, Array(authMessage.utf8))
        let proof = zip(clientKey, clientSignature).map { $0 ^ $1 }
        let serverKey = Self.hmac(key: salted, Array("Server Key".utf8))
        self.serverSignature = Self.hmac(key: serverKey, Array(authMessage.utf8))
        self.authMessage = authMessage
        return "\(withoutProof),p=\(Base64.encode(proof))"
    }

    /// Checks the server's `v=` signature (mutual authentication).
    public func verify(serverFinal: String) throws(Failure) {
        guard serverFinal.hasPrefix("v="), let signature = Base64.decode(String(serverFinal.dropFirst(2))),
            let expected = self.serverSignature, signature == expected
        else { throw .serverSignatureMismatch }
    }

    static func hmac(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        Array(HMAC<Insecure.SHA1>.authenticationCode(for: message, using: SymmetricKey(data: key)))
    }

    /// PBKDF2-HMAC-SHA1 with a 20-byte output (RFC 2898), as SCRAM's Hi().
    static func pbkdf2(password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        let key = SymmetricKey(data: password)
        var block = Array(HMAC<Insecure.SHA1>.authenticationCode(for: salt + [0, 0, 0, 1], using: key))
        var result = block
        for _ in 1..<iterations {
            block = Array(HMAC<Insecure.SHA1>.authenticationCode(for: block, using: key))
            for index in result.indices { result[index] ^= block[index] }
        }
        return result
    }
}
