import PeerShareCore
import PeerShareStore

/// Where a peer's assembled copy stands, and which step comes next: bookkeeping only, with
/// no I/O, so that the node runs the steps and the rules are tested from tables.
///
/// A copy made of chunk files grows while chunks arrive: whenever the chunks after its end
/// are held, they are appended in order, at most `stepChunks` at a time, so that hashing
/// and uploads on the same threads are not held up for long. A store whose chunks already
/// are the file (a single file) has nothing to append: it takes one step, to finish, once
/// every chunk is held.
struct AssemblyPlan {
    /// What one step does: append chunks up to `end` (exclusive) to `draft` (nil: begin
    /// one), then, if `finishing`, check the whole and give the file its name.
    struct Step {
        let draft: AssemblyDraft?
        let end: Int
        let finishing: Bool
    }

    static let stepChunks = 64

    /// The copy so far; nil while a step has it, or before the first step.
    private(set) var draft: AssemblyDraft?
    /// Chunks appended to the copy so far.
    private(set) var chunksInDraft = 0
    /// Whether a step is running.
    private(set) var stepping = false
    /// When every chunk was held (microseconds), to time the rest of the assembly.
    var completeAt: Int64?

    /// The next step, marked as running, or nil if there is nothing to do yet (or a step
    /// is already running).
    mutating func nextStep(held: ChunkSet, chunkCount: Int, copiesChunks: Bool) -> Step? {
        guard !stepping else { return nil }
        let start = chunksInDraft
        var end = start
        if copiesChunks {
            while end < chunkCount, end - start < Self.stepChunks, held.contains(ChunkID(UInt32(end))) { end += 1 }
        } else if held.isComplete {
            end = chunkCount
        }
        let finishing = end == chunkCount
        guard end > start || finishing else { return nil }
        // The step owns the draft (and its descriptor) until it hands it back.
        let step = Step(draft: draft, end: end, finishing: finishing)
        draft = nil
        stepping = true
        return step
    }

    /// A step appended chunks and handed the draft back.
    mutating func appended(_ draft: AssemblyDraft) {
        appended(upTo: draft.nextChunk, draft: draft)
    }

    /// The same, with the count given (tests plan steps without files).
    mutating func appended(upTo nextChunk: Int, draft: AssemblyDraft?) {
        stepping = false
        self.draft = draft
        chunksInDraft = nextChunk
    }

    /// A step ended with the file finished, or failed: the next copy starts from nothing.
    /// After a failure that means fetching a damaged chunk again, so the file is not
    /// complete any more either.
    mutating func ended(keepingCompleteAt: Bool) {
        stepping = false
        chunksInDraft = 0
        if !keepingCompleteAt { completeAt = nil }
    }

    /// The unfinished draft, taken away for deletion (a clean stop).
    mutating func takeDraft() -> AssemblyDraft? {
        defer { draft = nil }
        return draft
    }
}
