// swift-tools-version: 6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "Tether",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tether", targets: ["tether"]),
        .library(name: "TetherServer", targets: ["TetherServer"]),
        .executable(name: "tether-load", targets: ["tether-load"]),
        .library(name: "XMPPLoadKit", targets: ["XMPPLoadKit"]),
        // For the nested Fuzzing/ package.
        .library(name: "XMPPCore", targets: ["XMPPCore"]),
        .library(name: "BOSHCore", targets: ["BOSHCore"]),
        .library(name: "WebSocketCore", targets: ["WebSocketCore"]),
        .library(name: "XMPPUpstreamCore", targets: ["XMPPUpstreamCore"]),
        .library(name: "XMPPUpstream", targets: ["XMPPUpstream"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    ],
    targets: [
        // libexpat: the incremental XML parser behind every stream and BOSH body.
        .systemLibrary(name: "CExpat", pkgConfig: "expat", providers: [.apt(["libexpat1-dev"])]),
        // libresolv: DNS SRV lookups (_xmpp-client._tcp).
        .systemLibrary(name: "CResolv"),

        // Pure XML/XMPP building blocks; no sockets.
        .target(
            name: "XMPPCore",
            dependencies: [
                "CExpat",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // XEP-0124/XEP-0206: body codec and the session state machine; no sockets.
        .target(
            name: "BOSHCore",
            dependencies: [
                "XMPPCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // RFC 7395: message validation, <open/>/<close/> translation and the session state machine; no sockets.
        .target(
            name: "WebSocketCore",
            dependencies: [
                "XMPPCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The rules of the client-to-server stream, with no I/O: the stream state machine
        // (STARTTLS, restarts, closing), Happy Eyeballs scheduling, XEP-0368 record order,
        // the address policy and the PROXY header.
        .target(
            name: "XMPPUpstreamCore",
            dependencies: [
                "XMPPCore",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The client-to-server stream towards the XMPP server, on sockets: resolution, connect,
        // TLS, and the handler that runs XMPPUpstreamCore's machine.
        .target(
            name: "XMPPUpstream",
            dependencies: [
                "XMPPCore",
                "XMPPUpstreamCore",
                "CResolv",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The client side of a login (SASL PLAIN and SCRAM-SHA-1, bind, the RFC 3921 session), with
        // no I/O: played by prebind inside Tether and by the load generator's simulated clients.
        .target(
            name: "XMPPClientCore",
            dependencies: [
                "XMPPCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // HTTP edge, sessions, registry and configuration.
        .target(
            name: "TetherServer",
            dependencies: [
                "XMPPCore",
                "XMPPClientCore",
                "BOSHCore",
                "WebSocketCore",
                "XMPPUpstream",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "tether",
            dependencies: [
                "TetherServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                "XMPPCore",
                "XMPPUpstream",
                "BOSHCore",
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The load generator: simulated BOSH/WebSocket/TCP clients, measurements, reports and the
        // upstream stub (a measuring instrument, never a stand-in for a real server in correctness tests).
        .target(
            name: "XMPPLoadKit",
            dependencies: [
                "XMPPCore",
                "XMPPClientCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                // Scenario files (YAML; JSON is YAML too).
                .product(name: "Yams", package: "Yams"),
                // Live figures for --metrics-listen.
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "tether-load",
            dependencies: [
                "XMPPLoadKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        .testTarget(
            name: "XMPPLoadKitTests",
            dependencies: [
                "XMPPLoadKit",
                "XMPPClientCore",
                "XMPPCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "XMPPClientCoreTests",
            dependencies: ["XMPPClientCore", "XMPPCore", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "XMPPCoreTests",
            dependencies: ["XMPPCore", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BOSHCoreTests",
            dependencies: ["BOSHCore", "XMPPCore", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "WebSocketCoreTests",
            dependencies: ["WebSocketCore", "XMPPCore", .product(name: "NIOCore", package: "swift-nio"), .product(name: "CompressNIO", package: "compress-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "XMPPUpstreamTests",
            dependencies: [
                "XMPPUpstream", "XMPPUpstreamCore", "XMPPCore", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The HTTP edge, proxy headers and logging of TetherServer, on EmbeddedChannel (no sockets).
        .testTarget(
            name: "TetherServerTests",
            dependencies: [
                "TetherServer",
                "BOSHCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                "XMPPUpstream",
                "XMPPUpstreamCore",
                "XMPPCore",
                "WebSocketCore",
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TetherIntegrationTests",
            dependencies: [
                "TetherServer",
                "XMPPLoadKit",
                "XMPPClientCore",
                "XMPPCore",
                "BOSHCore",
                "WebSocketCore",
                "XMPPUpstream",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
