import Testing
@testable import PeerShareTorrent

@Suite("Bencoding (BEP 3)")
struct BencodeTests {
    @Test("values encode as BEP 3 says, dictionary keys in raw byte order")
    func encodes() {
        #expect(Bencode.integer(-42).encoded == Array("i-42e".utf8))
        #expect(Bencode.string("spam").encoded == Array("4:spam".utf8))
        #expect(Bencode.list([.integer(1), .string("a")]).encoded == Array("li1e1:ae".utf8))
        let dictionary = Bencode.dictionary(["piece length": .integer(16_384), "name": .string("f"), "Z": .integer(0), "length": .integer(3)])
        #expect(dictionary.encoded == Array("d1:Zi0e6:lengthi3e4:name1:f12:piece lengthi16384ee".utf8))
    }

    @Test("what is encoded decodes to the same value")
    func roundTrip() throws {
        let value = Bencode.dictionary(["info": .dictionary(["pieces": .bytes([0, 255, 10, 13]), "length": .integer(1 << 40)]),
                                        "url-list": .list([.string("http://127.0.0.1:1/files/")])])
        #expect(try BencodeDecoder.decode(value.encoded) == value)
    }

    @Test("hostile input is refused with a reason, never a crash", arguments: [
        "", "i", "i12", "ie", "i-e", "i1234567890123456789e", "5:abc", "99999999999999999999:a", "l", "d1:ai1e",
        "d1:bi1e1:ai2ee", "d1:ai1e1:ai2ee", "i1ei2e", "x", "-1:a",
        String(repeating: "l", count: 100) + String(repeating: "e", count: 100),
    ])
    func refusesHostileInput(text: String) {
        #expect(throws: BencodeDecoder.Invalid.self) { try BencodeDecoder.decode(Array(text.utf8)) }
    }
}
