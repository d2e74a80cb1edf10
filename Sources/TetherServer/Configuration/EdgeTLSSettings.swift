import NIOSSL

/// Tether's own TLS towards browsers (`--listen-tls`), for a deployment with no TLS proxy in
/// front: pages served over HTTPS can only reach `https://` and `wss://` endpoints.
public struct EdgeTLSSettings: Sendable {
    public let certificatePath: String
    public let keyPath: String
    /// Built once from the files; a reload reads them again (a renewed certificate applies to the
    /// connections accepted afterwards, live ones keep theirs).
    public let context: NIOSSLContext

    /// Reads a PEM certificate chain (leaf first) and its private key.
    public init(certificatePath: String, keyPath: String) throws(ConfigurationError) {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
        } catch {
            throw ConfigurationError("--tls-certificate '\(certificatePath)' holds no readable PEM certificate: \(error)")
        }
        guard !chain.isEmpty else { throw ConfigurationError("--tls-certificate '\(certificatePath)' holds no PEM certificate") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch {
            throw ConfigurationError("--tls-key '\(keyPath)' holds no readable PEM private key: \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        // ALPN (RFC 7301): HTTP/2 for browsers that offer it, so all tabs share one connection;
        // HTTP/1.1 for the rest and for WebSocket, which browsers open over HTTP/1.1.
        configuration.applicationProtocols = ["h2", "http/1.1"]
        do {
            self.context = try NIOSSLContext(configuration: configuration)
        } catch {
            throw ConfigurationError("--tls-certificate and --tls-key do not make a TLS configuration (does the key belong to the certificate?): \(error)")
        }
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }
}
