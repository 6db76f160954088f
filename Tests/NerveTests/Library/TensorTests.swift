// Tensors' storage: zeroed as promised however it is placed (large buffers are pages mapped
// from the kernel, small ones come from the C allocator and are cleared).
import Nerve
import Testing

@Suite("Tensors")
struct TensorTests {
  @Test("zero tensors of every size read as zeros, also where memory was just freed", arguments: [1, 1000, 524_288, 3_000_000])
  func zeros(count: Int) {
    for _ in 0..<3 {
      // A tensor full of non-zeros freed first: the next one may take its memory.
      do {
        let ones = Tensor(shape: [count], repeating: 1)
        #expect(ones.scalars.allSatisfy { $0 == 1 })
      }
      var zeros = Tensor(shape: [count])
      #expect(zeros.scalars.allSatisfy { $0 == 0 }, "count \(count)")
      // Writable throughout, the last element included.
      zeros[flat: count - 1] = 2
      #expect(zeros[flat: count - 1] == 2 && zeros[flat: 0] == (count == 1 ? 2 : 0))
    }
  }
}
