/// The SASL mechanisms Tether's clients can use (RFC 4616 PLAIN, RFC 5802 SCRAM-SHA-1).
public enum SASLMechanism: String, Sendable, Codable, Hashable, CaseIterable {
    case plain = "PLAIN"
    case scramSHA1 = "SCRAM-SHA-1"
}
