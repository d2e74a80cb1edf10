// swift-tools-version: 6.1
// libFuzzer targets for Tether's XML stream framer and BOSH body parser.
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
    ],
    dependencies: [
        .package(name: "Tether", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
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
    ]
)
