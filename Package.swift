// swift-tools-version:6.1
import PackageDescription

#if canImport(Glibc)
import Glibc
#endif

// How the release executables are linked on Linux (docs/BENCHMARKS.md, "Linking for less
// resident memory"): no dynamic symbol table of every function, which Swift exports from
// executables by default and nothing here looks up; and, with the toolchain's lld, relative
// relocations packed (DT_RELR), so that a starting process no longer reads and applies
// 97,000 relocation entries. A peer's peak RSS drops by about 3 MiB, and the executable stays
// position-independent. Packed relocations need glibc 2.36 or later at run time, and lld
// marks the executable so; a machine with an older glibc builds without them.
let releaseLinking: [LinkerSetting] = {
    var flags = ["-Xlinker", "--no-export-dynamic"]
    if glibcSupportsPackedRelocations {
        flags += ["-Xclang-linker", "-fuse-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"]
    }
    return [.unsafeFlags(flags, .when(platforms: [.linux], configuration: .release))]
}()

/// Whether the glibc this package is built on runs DT_RELR executables (2.36 and later).
var glibcSupportsPackedRelocations: Bool {
    #if canImport(Glibc)
    var text = [CChar](repeating: 0, count: 64)  // "glibc 2.36"
    guard confstr(Int32(_CS_GNU_LIBC_VERSION), &text, text.count) > 0 else { return false }
    let version = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).split(separator: " ").last ?? ""
    let parts = version.split(separator: ".").compactMap { Int($0) }
    guard parts.count >= 2 else { return false }
    return (parts[0], parts[1]) >= (2, 36)
    #else
    return false
    #endif
}

let package = Package(
    name: "PeerShare",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "peershare", targets: ["peershare"]),
        .executable(name: "peershare-inspect", targets: ["peershare-inspect"]),
        .executable(name: "peershare-fuzz", targets: ["peershare-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // SQLite from the system (Debian: libsqlite3-dev), reached through a module map.
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        // Value types shared by every layer: chunk layout, manifest, bitfields, share assignment, chunk picking.
        .target(
            name: "PeerShareCore",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        // Everything a node keeps on disk behind one seam: the SQLite wrapper, the chunk index
        // (schema from Schema/), and the two storage layouts (chunk files, one single file).
        .target(
            name: "PeerShareStore",
            dependencies: [
                "CSQLite", "PeerShareCore", "CPosixShim",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The wire protocol: frames, messages and their NIO channel handlers (docs/PROTOCOL.md).
        .target(
            name: "PeerShareWire",
            dependencies: [
                "PeerShareCore",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Private swarms (issue 16): node identities (a key pair, its certificate, the node ID
        // that hashes it), tickets, and TLS 1.3 with both sides verified by node ID.
        .target(
            name: "PeerShareTrust",
            dependencies: [
                "PeerShareCore", "PeerShareStore", "CPosixShim",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ]
        ),
        // A node's HTTP listener (`--http`, issue 17): HTTP/1.1 GET and HEAD with keep-alive,
        // hardened like the wire protocol, routing by exact path to whatever a node serves.
        .target(
            name: "PeerShareHTTP",
            dependencies: [
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // BitTorrent metainfo (issue 18): bencoding, and a .torrent whose sources are web seeds.
        .target(
            name: "PeerShareTorrent",
            dependencies: ["PeerShareCore", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // The owner and peer processes: chunk files on disk, sessions, assembly, event logging,
        // and what a node tells over HTTP (Prometheus metrics, its status).
        .target(
            name: "PeerShareNode",
            dependencies: [
                "PeerShareCore", "PeerShareStore", "PeerShareWire", "PeerShareTrust", "PeerShareHTTP", "CPosixShim",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Shared command-line plumbing: one-line errors, endpoint arguments, log setup.
        .target(
            name: "PeerShareCLI",
            dependencies: [
                "PeerShareCore", "CPosixShim",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "peershare",
            dependencies: [
                "PeerShareCore", "PeerShareNode", "PeerShareCLI", "PeerShareStore", "PeerShareInspect", "PeerShareTrust", "PeerShareHTTP", "PeerShareTorrent",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            linkerSettings: releaseLinking
        ),
        // C calls Swift's Glibc module does not import (syncfs, mallopt, a pseudo-terminal for tests).
        .target(name: "CPosixShim"),
        // The fuzz targets (raw wire bytes, structure-aware frames, whole conversations), a
        // library so that the tests replay the committed corpus through them.
        .target(
            name: "PeerShareFuzzing",
            dependencies: [
                "PeerShareCore", "PeerShareWire",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // libFuzzer's entry point for those targets; see tools/fuzz. Built normally it replays inputs.
        .executableTarget(
            name: "peershare-fuzz",
            dependencies: [
                "PeerShareCore", "PeerShareWire", "PeerShareFuzzing",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Sources/PeerShareFuzz"
        ),
        // peershare-inspect's queries and reports, a library so that tests call it directly.
        .target(
            name: "PeerShareInspect",
            dependencies: [
                "PeerShareCore", "PeerShareStore",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "peershare-inspect",
            dependencies: [
                "PeerShareCore", "PeerShareStore", "PeerShareCLI", "PeerShareInspect",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            linkerSettings: releaseLinking
        ),
        .testTarget(
            name: "PeerShareTests",
            dependencies: [
                "PeerShareCore", "PeerShareStore", "PeerShareWire", "PeerShareNode", "PeerShareCLI", "PeerShareInspect", "PeerShareFuzzing",
                "PeerShareTrust", "PeerShareHTTP", "PeerShareTorrent",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
    ]
)
