/// `POST /prebind`, off unless a secret is set: only a backend that knows it may open sessions.
public struct PrebindSettings: Hashable, Sendable {
    /// Sent by the backend as `Authorization: Bearer SECRET`.
    public var secret: String
    /// The whole login (connect, SASL, bind) must finish within this time (504 beyond).
    public var timeout: Duration

    public static let defaultTimeout: Duration = .seconds(20)

    public init(secret: String, timeout: Duration = Self.defaultTimeout) {
        self.secret = secret
        self.timeout = timeout
    }
}
