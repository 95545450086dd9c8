// swift-tools-version:6.1
// Dyninka for Swift: distributed FaaS dataflow applications from one Swift file.
import CompilerPluginSupport
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]
// The host's hop path is single-threaded per loop; dynamic exclusivity checks there cost ~8% of its
// user CPU (measured with perf), so release builds of the host modules leave them out.
let hostSettings: [SwiftSetting] = strict + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "Dyninka",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "dyninka-host", targets: ["dyninka-host"]),
        .executable(name: "dyninka", targets: ["dyninka"]),
        // The fog test bed's link delay (NFQUEUE; the kernel here has no netem).
        .executable(name: "dyninka-linkemu", targets: ["dyninka-linkemu"]),
        // What an app file imports when it runs as an ordinary local program (macros included).
        .library(name: "Dyninka", type: .dynamic, targets: ["Dyninka"]),
        .library(name: "DyninkaRuntime", targets: ["DyninkaRuntime"]),
        // A hand-written service table the host tests load with dlopen.
        .library(name: "DyninkaFixture", type: .dynamic, targets: ["DyninkaFixture"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // Debug builds only: the host and generated app libraries never link it.
        .package(url: "https://github.com/swiftlang/swift-syntax", exact: "603.0.1"),
    ],
    targets: [
        // C support: libuv (Debian libuv1-dev), llhttp (placed by scripts/bootstrap), the table ABI.
        .systemLibrary(name: "CLibUV", path: "CSupport/CLibUV", pkgConfig: "libuv",
                       providers: [.apt(["libuv1-dev"])]),
        .target(name: "CLLHTTP", path: "CSupport/CLLHTTP",
                sources: ["check.c", "vendor/api.c", "vendor/http.c", "vendor/llhttp.c"],
                publicHeadersPath: "include"),
        .target(name: "CDyninkaABI", path: "CSupport/CDyninkaABI"),
        // HMAC-SHA256 of the app key through OpenSSL's libcrypto (Debian libssl-dev).
        .target(name: "CDyninkaCrypto", path: "CSupport/CDyninkaCrypto", linkerSettings: [.linkedLibrary("crypto")]),
        // Debian libnetfilter-queue-dev (scripts/bootstrap installs it).
        .executableTarget(name: "dyninka-linkemu", path: "CSupport/LinkEmulator",
                          linkerSettings: [.linkedLibrary("netfilter_queue"), .linkedLibrary("nfnetlink")]),

        // The host, one module per layer.
        .target(name: "DyninkaLoop", dependencies: ["CLibUV"], swiftSettings: hostSettings),
        .target(name: "DyninkaHTTP", dependencies: ["CLLHTTP"], swiftSettings: hostSettings),
        // Route syntax (Swift call chains): parsed and printed the same way by host and compiler.
        .target(name: "DyninkaRoute", swiftSettings: hostSettings),
        // The host's settings, described once: the table, the typed values, the options of
        // `dyninka-host`, the argv and env every launcher and manifest renders.
        .target(name: "DyninkaSettings", dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")],
                swiftSettings: strict),
        .target(name: "DyninkaHost", dependencies: ["DyninkaLoop", "DyninkaHTTP", "DyninkaRoute", "DyninkaSettings", "CDyninkaABI", "CDyninkaCrypto"],
                swiftSettings: hostSettings),
        .executableTarget(name: "dyninka-host", dependencies: [
            "DyninkaHost", "DyninkaSettings", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: strict),

        // What a compiled app library links: ABI glue and JSON coding, nothing else.
        .target(name: "DyninkaRuntime", dependencies: ["CDyninkaABI", "DyninkaHTTP"], swiftSettings: strict),

        // The SDK: @Service, @Placed, RawJSON; and the macros behind it.
        .macro(name: "DyninkaMacros", dependencies: [
            .product(name: "SwiftSyntax", package: "swift-syntax"),
            .product(name: "SwiftSyntaxMacros", package: "swift-syntax"),
            .product(name: "SwiftCompilerPlugin", package: "swift-syntax"),
            .product(name: "SwiftDiagnostics", package: "swift-syntax"),
        ], swiftSettings: strict),
        .target(name: "Dyninka", dependencies: ["DyninkaRuntime", "DyninkaMacros"], swiftSettings: strict),

        // The compiler: one Swift file in, IR, checks, a generated app package and its library out.
        .target(name: "DyninkaCompiler", dependencies: [
            "DyninkaRoute",
            .product(name: "SwiftSyntax", package: "swift-syntax"),
            .product(name: "SwiftParser", package: "swift-syntax"),
        ], swiftSettings: strict),
        // The control plane, one module per role; the arrows point one way only:
        //   dyninka (CLI) -> DyninkaRunner -> DyninkaTestbed -> DyninkaSystem
        //                 -> DyninkaView -> DyninkaSystem
        //                 -> DyninkaDeploy -> DyninkaSystem
        //   DyninkaRunner, DyninkaDeploy and the host -> DyninkaSettings (a leaf: the host's settings)
        //   and every one of them -> DyninkaCompiler (the IR, the dataflow graph, placement, object names).
        // The system underneath: processes, network namespaces, blocking HTTP for control traffic.
        .target(name: "DyninkaSystem", dependencies: ["DyninkaHTTP"], swiftSettings: strict),
        // The fog test bed: network namespaces, emulated links, addresses that move.
        .target(name: "DyninkaTestbed", dependencies: ["DyninkaSystem", "DyninkaCompiler"], swiftSettings: strict),
        // Running an app on this machine or the bed: launch plans, supervision, hand-overs.
        .target(name: "DyninkaRunner", dependencies: ["DyninkaSettings", "DyninkaTestbed", "DyninkaSystem", "DyninkaCompiler", "DyninkaRoute"], swiftSettings: strict),
        // The live view and the adapt loop's decisions: it takes host endpoints, never a runner.
        .target(name: "DyninkaView", dependencies: ["DyninkaSystem", "DyninkaCompiler", "DyninkaHTTP"], swiftSettings: strict),
        // Clusters: Kubernetes and Marathon from the same IR.
        .target(name: "DyninkaDeploy", dependencies: ["DyninkaSettings", "DyninkaSystem", "DyninkaCompiler", "DyninkaRoute", "CDyninkaCrypto"],
                swiftSettings: strict),
        .executableTarget(name: "dyninka", dependencies: [
            "DyninkaCompiler", "DyninkaDeploy", "DyninkaRunner", "DyninkaView", "DyninkaTestbed", "DyninkaSystem", "DyninkaSettings", "CDyninkaCrypto", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: strict),

        .target(name: "DyninkaFixture", dependencies: ["DyninkaRuntime"],
                path: "Tests/Fixtures/DyninkaFixture", swiftSettings: strict),
        .testTarget(name: "DyninkaLoopTests", dependencies: ["DyninkaLoop"], swiftSettings: strict),
        .testTarget(name: "DyninkaHTTPTests", dependencies: ["DyninkaHTTP"], swiftSettings: strict),
        .testTarget(name: "DyninkaRouteTests", dependencies: ["DyninkaRoute"], swiftSettings: strict),
        .target(name: "DyninkaTestSupport", path: "Tests/Support/DyninkaTestSupport", swiftSettings: strict),
        .testTarget(name: "DyninkaRuntimeTests", dependencies: ["DyninkaRuntime", "DyninkaTestSupport"], swiftSettings: strict),
        .testTarget(name: "DyninkaHostTests", dependencies: ["DyninkaHost", "DyninkaSettings", "DyninkaHTTP", "DyninkaRoute", "DyninkaTestSupport", "CDyninkaCrypto"],
                    swiftSettings: strict),
        .testTarget(name: "DyninkaCompilerTests", dependencies: [
            "DyninkaCompiler", "DyninkaRoute",
            .product(name: "SwiftSyntax", package: "swift-syntax"), .product(name: "SwiftParser", package: "swift-syntax"),
        ],
                    exclude: ["Golden"], swiftSettings: strict),
        .testTarget(name: "DyninkaDeployTests", dependencies: ["DyninkaDeploy", "DyninkaSettings", "DyninkaView", "DyninkaRunner", "DyninkaSystem", "DyninkaCompiler"],
                    exclude: ["Golden"], swiftSettings: strict),
        // Runs the real `dyninka` CLI on the examples: builds, local runs, distributed runs.
        .testTarget(name: "DyninkaEndToEndTests", dependencies: ["DyninkaDeploy", "DyninkaTestbed", "DyninkaSystem", "DyninkaCompiler"],
                    swiftSettings: strict),
    ]
)
