import Testing
@testable import PeerShareCore
@testable import PeerShareNode

/// The steps a peer's assembly takes, from pictures of the chunks held ("1" held, "0" not),
/// drawn with ChunkPickerTests' `PickerScenario.set`.
@Suite("Assembly steps: which chunks each step appends, and when the file is finished")
struct AssemblyPlanTests {
    struct Row: CustomStringConvertible, Sendable {
        let held: String
        let copiesChunks: Bool
        /// Chunks already appended before the step.
        let inDraft: Int
        /// The step's end and whether it finishes; nil for no step.
        let expected: (end: Int, finishing: Bool)?
        var description: String { "\(held) \(copiesChunks ? "chunk files" : "single file") from \(inDraft)" }
    }

    static let rows: [Row] = [
        // Chunk files append the held run after the copy's end, and finish with the last chunk.
        Row(held: "111011", copiesChunks: true, inDraft: 0, expected: (3, false)),
        Row(held: "111011", copiesChunks: true, inDraft: 3, expected: nil),
        Row(held: "011111", copiesChunks: true, inDraft: 0, expected: nil),
        Row(held: "111111", copiesChunks: true, inDraft: 3, expected: (6, true)),
        Row(held: "111111", copiesChunks: true, inDraft: 0, expected: (6, true)),
        // A single file has nothing to append: one step, to finish, once every chunk is held.
        Row(held: "111110", copiesChunks: false, inDraft: 0, expected: nil),
        Row(held: "111111", copiesChunks: false, inDraft: 0, expected: (6, true)),
        // An empty file is finished as soon as its manifest is known, in either layout.
        Row(held: "", copiesChunks: true, inDraft: 0, expected: (0, true)),
        Row(held: "", copiesChunks: false, inDraft: 0, expected: (0, true)),
    ]

    @Test("one step from a picture", arguments: rows)
    func oneStep(row: Row) {
        var plan = AssemblyPlan()
        if row.inDraft > 0 { plan.appended(upTo: row.inDraft, draft: nil) }
        let step = plan.nextStep(held: PickerScenario.set(row.held), chunkCount: row.held.count, copiesChunks: row.copiesChunks)
        #expect(step?.end == row.expected?.end)
        #expect(step?.finishing == row.expected?.finishing)
        #expect(plan.stepping == (step != nil))
    }

    @Test("a step at a time: none while one runs, at most 64 chunks each")
    func stepsOfAtMost64() {
        let held = ChunkSet(capacity: 200, (0..<130).map { ChunkID(UInt32($0)) })
        var plan = AssemblyPlan()
        #expect(plan.nextStep(held: held, chunkCount: 200, copiesChunks: true)?.end == 64)
        #expect(plan.nextStep(held: held, chunkCount: 200, copiesChunks: true) == nil, "a step is running")
        plan.appended(upTo: 64, draft: nil)
        #expect(plan.nextStep(held: held, chunkCount: 200, copiesChunks: true)?.end == 128)
        plan.appended(upTo: 128, draft: nil)
        #expect(plan.nextStep(held: held, chunkCount: 200, copiesChunks: true)?.end == 130)
        plan.appended(upTo: 130, draft: nil)
        #expect(plan.nextStep(held: held, chunkCount: 200, copiesChunks: true) == nil, "chunk 130 is missing")
    }

    @Test("a damaged chunk starts the copy over and the file is no longer complete; a finished one keeps its time")
    func endings() {
        var plan = AssemblyPlan()
        plan.completeAt = 42
        plan.appended(upTo: 10, draft: nil)
        plan.ended(keepingCompleteAt: true)
        #expect(plan.chunksInDraft == 0 && plan.completeAt == 42 && !plan.stepping)
        plan.appended(upTo: 10, draft: nil)
        plan.ended(keepingCompleteAt: false)
        #expect(plan.chunksInDraft == 0 && plan.completeAt == nil)
    }
}
