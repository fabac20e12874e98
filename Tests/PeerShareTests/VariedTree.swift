import Foundation
@testable import PeerShareCore

/// The folder the issue asks for, written under `root/NAME`: empty files and folders, files
/// of 1 byte and of exactly one chunk, nesting 8 deep, names in Greek, Hangul, CJK and emoji
/// written in NFD, executables, one large file, and small files up to `files` in all.
struct VariedTree {
    let root: String
    let name: String
    var path: String { root + "/" + name }

    /// Builds it on a thread of its own: the cooperative pool is not for disk work.
    static func make(in root: String, name: String = "release", files: Int, largeFileSize: Int) async throws -> VariedTree {
        let tree = VariedTree(root: root, name: name)
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            Thread { continuation.resume(with: Result { try tree.write(files: files, largeFileSize: largeFileSize) }) }.start()
        }
        return tree
    }

    private func write(files: Int, largeFileSize: Int) throws {
        let manager = FileManager.default
        var written = 0
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        func bytes(_ count: Int) -> Data {
            var data = [UInt8](repeating: 0, count: count)
            for i in 0..<count {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                data[i] = UInt8(truncatingIfNeeded: state >> 33)
            }
            return Data(data)
        }
        func file(_ relative: String, _ data: Data, executable: Bool = false) throws {
            let full = path + "/" + relative
            try manager.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            guard manager.createFile(atPath: full, contents: data, attributes: [.posixPermissions: executable ? 0o755 : 0o644]) else {
                throw SwarmError("cannot write \(full)")
            }
            written += 1
        }
        for folder in ["empty", "nested/also-empty"] {
            try manager.createDirectory(atPath: path + "/" + folder, withIntermediateDirectories: true)
        }
        for i in 0..<10 { try file("zero/empty-\(i)", Data()) }
        for i in 0..<10 { try file("one-byte/b\(i)", bytes(1)) }
        for i in 0..<5 { try file("one-chunk/c\(i).bin", bytes(102_400)) }
        try file("d1/d2/d3/d4/d5/d6/d7/d8/deep.txt", bytes(5_000))
        try file("bin/run.sh", Data("#!/bin/sh\necho hi\n".utf8), executable: true)
        try file("bin/tool", bytes(70_000), executable: true)
        // Names a Mac would write in NFD: decomposed here on purpose.
        for name in ["Ελληνικά/άλφα.txt", "한국어/파일.txt", "中文/文件.txt", "emoji/🎉 party ✨.txt", "café/résumé.pdf"] {
            try file(name.decomposedStringWithCanonicalMapping, bytes(3_000))
        }
        // The large file: one random MiB, each copy stamped with its number, so no two chunks match.
        let block = bytes(1 << 20)
        var large = Data(capacity: largeFileSize)
        var copy: UInt64 = 0
        while large.count < largeFileSize {
            var stamped = block
            withUnsafeBytes(of: copy.bigEndian) { stamped.replaceSubrange(0..<8, with: $0) }
            large.append(stamped.prefix(largeFileSize - large.count))
            copy += 1
        }
        try file("large/model.bin", large)
        var i = 0
        while written < files {
            // Sizes from 0 to 40 KiB, some across a chunk boundary when the chunk is small.
            try file("data/\(i % 37)/item-\(i).dat", bytes(Int(state >> 40) % 40_960))
            i += 1
        }
    }
}

/// A folder's contents as comparable lines, by UTF-8 bytes (Swift's string equality would
/// call an NFD name equal to its NFC twin): "f PATH MODE SHA256" for files, "d PATH" for
/// every folder. `normalising` writes names in NFC, as a peer receives them.
func treeListing(_ root: String, normalising: Bool = false) throws -> [[UInt8]] {
    var lines: [[UInt8]] = []
    func walk(_ relative: String) throws {
        let full = relative.isEmpty ? root : root + "/" + relative
        for name in try FileManager.default.contentsOfDirectory(atPath: full) {
            let child = relative.isEmpty ? name : relative + "/" + name
            let shown = normalising ? child.precomposedStringWithCanonicalMapping : child
            var info = stat()
            guard lstat(root + "/" + child, &info) == 0 else { throw SwarmError("cannot stat \(child)") }
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                lines.append(Array("d \(shown)".utf8))
                try walk(child)
            case S_IFREG:
                let digest = fileDigest(root + "/" + child)?.hex ?? "?"
                lines.append(Array("f \(shown) \(String(info.st_mode & 0o777, radix: 8)) \(digest)".utf8))
            default:
                lines.append(Array("? \(shown)".utf8))  // a symlink or special file: never shared
            }
        }
    }
    try walk("")
    return lines.sorted { $0.lexicographicallyPrecedes($1) }
}

/// The lines of `a` and `b` that differ, for a failure message.
func listingDifference(_ a: [[UInt8]], _ b: [[UInt8]]) -> String {
    let left = Set(a), right = Set(b)
    let onlyLeft = a.filter { !right.contains($0) }.prefix(5).map { "- " + String(decoding: $0, as: UTF8.self) }
    let onlyRight = b.filter { !left.contains($0) }.prefix(5).map { "+ " + String(decoding: $0, as: UTF8.self) }
    return (onlyLeft + onlyRight).joined(separator: "\n")
}
