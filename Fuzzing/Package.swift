// swift-tools-version: 6.1
// libFuzzer targets for what untrusted peers reach in Tether: the XML stream framer, the BOSH body
// parser, the whole connection pipeline (HTTP requests, WebSocket frames, HTTP/2 frames) and the
// edge policies.
// Build and run with ../scripts/fuzz.sh (see README.md in this directory).
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "TetherFuzzing",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "XMLStreamFramerFuzzer", targets: ["XMLStreamFramerFuzzer"]),
        .executable(name: "BOSHBodyFuzzer", targets: ["BOSHBodyFuzzer"]),
        .executable(name: "WebSocketFrameFuzzer", targets: ["WebSocketFrameFuzzer"]),
        .executable(name: "HTTPRequestFuzzer", targets: ["HTTPRequestFuzzer"]),
        .executable(name: "EdgePolicyFuzzer", targets: ["EdgePolicyFuzzer"]),
        .executable(name: "HTTP2FrameFuzzer", targets: ["HTTP2FrameFuzzer"]),
    ],
    dependencies: [
        .package(name: "Tether", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
    ],
    targets: [
        .executableTarget(
            name: "XMLStreamFramerFuzzer",
            dependencies: [
                .product(name: "XMPPCore", package: "Tether"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "BOSHBodyFuzzer",
            dependencies: [
                .product(name: "BOSHCore", package: "Tether"),
                .product(name: "XMPPCore", package: "Tether"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The production connection pipeline (TetherServer.connectionInitializer) on an
        // EmbeddedChannel, and a reader for what it writes; shared by the pipeline targets.
        .target(
            name: "PipelineHarness",
            dependencies: [
                .product(name: "TetherServer", package: "Tether"),
                .product(name: "WebSocketCore", package: "Tether"),
                .product(name: "XMPPCore", package: "Tether"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "WebSocketFrameFuzzer",
            dependencies: [
                "PipelineHarness",
                .product(name: "TetherServer", package: "Tether"),
                .product(name: "WebSocketCore", package: "Tether"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "HTTPRequestFuzzer",
            dependencies: [
                "PipelineHarness",
                .product(name: "TetherServer", package: "Tether"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "HTTP2FrameFuzzer",
            dependencies: [
                "PipelineHarness",
                .product(name: "TetherServer", package: "Tether"),
                .product(name: "XMPPCore", package: "Tether"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "EdgePolicyFuzzer",
            dependencies: [
                .product(name: "TetherServer", package: "Tether"),
                .product(name: "XMPPUpstream", package: "Tether"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
