// Loading data: MNIST's splits, the digits CSV, and every kind of bad file giving an error that
// names the file and the problem.
import CZlib
import Foundation
import Nerve
import Testing

@Suite("Data loading")
struct DataTests {
  @Test("MNIST splits 50,000 / 10,000 / 10,000 with pixels in [0, 1]")
  func mnistSplits() throws {
    let m = Fixtures.mnist
    #expect(m.train.count == 50_000 && m.validation.count == 10_000 && m.test.count == 10_000)
    #expect(m.train.sampleShape == [784] && m.train.classes == 10)
    let pixels = m.test.features.scalars
    #expect(pixels.min()! == 0 && pixels.max()! == 1)
    // Label counts of the published test set.
    #expect(m.test.labels.filter { $0 == 0 }.count == 980)
    #expect(m.test.labels.filter { $0 == 1 }.count == 1135)
    // Validation is the end of the training file.
    let all = try MNIST.load(validationCount: 0)
    #expect(all.train.count == 60_000)
    #expect(Array(all.train.labels[50_000..<50_010]) == Array(m.validation.labels[0..<10]))
    let images = try MNIST.load(imageShape: .channels)
    #expect(images.test.sampleShape == [28, 28, 1])
    // Converting only the first 100 training images changes nothing else.
    let few = try MNIST.load(trainLimit: 100)
    #expect(few.train.count == 100 && few.train.labels == Array(m.train.labels[0..<100]))
    #expect(few.train.features == m.train.prefix(100).features)
    #expect(few.validation.features == m.validation.features && few.test.features == m.test.features)
    #expect(try MNIST.load(trainLimit: 1_000_000).train.count == 50_000)
  }

  @Test("the labs' ten indices pick one image of each digit, 0 to 9")
  func labIndices() throws {
    let ten = try Fixtures.mnist.train.subset(indices: [1, 3, 5, 7, 2, 0, 13, 15, 17, 4])
    #expect(ten.labels == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    #expect(Fixtures.mnist.train.prefix(1000).count == 1000)
    #expect(throws: NerveError.self) { try Fixtures.mnist.train.subset(indices: [50_000]) }
  }

  @Test("the 8x8 digits: 1,797 samples of 64 values 0 to 16")
  func digits() throws {
    let d = try Digits.load()
    #expect(d.count == 1797 && d.sampleShape == [64] && d.classes == 10)
    #expect(d.features.scalars.max()! == 16 && d.features.scalars.min()! == 0)
    let (a, b) = try d.split(fraction: 0.8, seed: 0)
    #expect(a.count == 1438 && b.count == 359)
    let (a2, _) = try d.split(fraction: 0.8, seed: 0)
    #expect(a.labels == a2.labels, "a split is fixed by its seed")
    // Standardisation fitted on the training part: mean 0, std 1 there.
    let s = Preprocessing.standardization(fittedOn: a)
    let t = try a.preprocessed(s)
    let col = (0..<t.count).map { Double(t.features[flat: $0 * 64 + 20]) }
    let mean = col.reduce(0, +) / Double(col.count)
    let std = (col.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(col.count)).squareRoot()
    #expect(abs(mean) < 1e-5 && abs(std - 1) < 1e-4)
  }

  // MARK: Bad files

  func idxBytes(type: UInt8 = 0x08, dims: [Int], payload: Int? = nil) -> [UInt8] {
    var b: [UInt8] = [0, 0, type, UInt8(dims.count)]
    for d in dims { b += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] }
    return b + [UInt8](repeating: 7, count: payload ?? dims.reduce(1, *))
  }

  func write(_ bytes: [UInt8], _ name: String, in dir: String) -> String {
    let path = dir + "/" + name
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    return path
  }

  func expectError(_ path: String, _ words: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    do {
      _ = try IDXArray(contentsOf: path)
      Issue.record("\(path) loaded without error", sourceLocation: sourceLocation)
    } catch let e as NerveError {
      #expect(e.kind == .badFile && e.location == path, "\(e)", sourceLocation: sourceLocation)
      for w in words { #expect(e.message.contains(w), "'\(w)' not in: \(e)", sourceLocation: sourceLocation) }
    } catch {
      Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
  }

  @Test("bad IDX files give an error naming the file and the problem")
  func badIDX() throws {
    let dir = Fixtures.temporaryDirectory()
    expectError(dir + "/missing-idx3-ubyte", ["no such file"])
    expectError(write([0, 0], "short", in: dir), ["truncated", "4 bytes"])
    expectError(write([1, 2, 8, 1, 0, 0, 0, 1, 5], "magic", in: dir), ["not an IDX file"])
    expectError(write([0, 0, 0x42, 1, 0, 0, 0, 1, 5], "type", in: dir), ["element type"])
    expectError(write(Array(idxBytes(dims: [10, 28, 28]).prefix(10)), "header", in: dir), ["truncated", "header"])
    expectError(write(idxBytes(dims: [10, 28, 28], payload: 5000), "data", in: dir), ["truncated", "7840", "5000"])
    expectError(write(idxBytes(dims: [3], payload: 5), "trailing", in: dir), ["extra"])
    // Gzip: truncated and corrupt streams.
    let good = idxBytes(dims: [100, 28, 28])
    let gz = try gzip(good)
    #expect(try IDXArray(contentsOf: write(gz, "ok.gz", in: dir)).dimensions == [100, 28, 28])
    expectError(write(Array(gz.prefix(gz.count / 2)), "cut.gz", in: dir), ["truncated gzip"])
    var corrupt = gz
    for i in 12..<min(40, corrupt.count) { corrupt[i] ^= 0x5A }
    expectError(write(corrupt, "corrupt.gz", in: dir), ["corrupt gzip"])
    // Two members (read by the streaming reader: the trailer gives only the last one's size)
    // give the concatenation, as one member does (read whole).
    let twoMembers = try gzip(Array(good[0..<3000])) + gzip(Array(good[3000...]))
    let raw = try IDXArray(contentsOf: write(good, "raw", in: dir)).floats()
    #expect(try IDXArray(contentsOf: write(twoMembers, "two.gz", in: dir)).floats() == raw)
    #expect(try IDXArray(contentsOf: write(gz, "ok.gz", in: dir)).floats() == raw)
    // A trailer whose size disagrees with the data is corrupt, however it is read.
    var wrongSize = gz
    wrongSize[wrongSize.count - 4] ^= 0x10
    expectError(write(wrongSize, "size.gz", in: dir), ["corrupt gzip", "length"])
    // A raw (uncompressed) file loads too, and int32/float32 element types convert.
    #expect(try IDXArray(contentsOf: write(good, "raw", in: dir)).floats()[0] == 7)
    let f32 = idxBytes(type: 0x0D, dims: [1], payload: 0) + [0x3F, 0xC0, 0, 0]
    #expect(try IDXArray(contentsOf: write(f32, "f32", in: dir)).floats() == [1.5])
  }

  @Test("every IDX element type reads as stored; sizes that overflow are refused, not trusted")
  func idxTypes() throws {
    let dir = Fixtures.temporaryDirectory()
    func file(_ type: UInt8, _ values: [UInt8]) -> [UInt8] { idxBytes(type: type, dims: [2], payload: 0) + values }
    let cases: [(UInt8, [UInt8], [Float], String)] = [
      (0x08, [0xFF, 0x02], [255, 2], "unsigned byte"),
      (0x09, [0xFF, 0x02], [-1, 2], "signed byte"),
      (0x0B, [0xFF, 0xFE, 0x01, 0x00], [-2, 256], "int16"),
      (0x0C, [0xFF, 0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x00, 0x00], [-3, 65536], "int32"),
      (0x0D, [0xC0, 0x20, 0, 0, 0x3E, 0x80, 0, 0], [-2.5, 0.25], "float32"),
      (0x0E, [0xBF, 0xF8, 0, 0, 0, 0, 0, 0, 0x40, 0x24, 0, 0, 0, 0, 0, 0], [-1.5, 10], "float64"),
    ]
    for (type, bytes, expected, name) in cases {
      let idx = try IDXArray(contentsOf: write(file(type, bytes), "t\(type)", in: dir))
      #expect(idx.floats() == expected, "\(name)")
      #expect(idx.type.description.hasPrefix(name))
      if type >= 0x0D {
        #expect(throws: NerveError.self) { try idx.integers() }
      } else {
        #expect(try idx.integers() == expected.map { Int($0) })
      }
    }
    // Dimensions whose product overflows (or is far beyond any file) are refused by name.
    expectError(write(idxBytes(dims: [0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], payload: 4), "huge", in: dir), ["dimensions"])
    expectError(write(idxBytes(type: 0x0E, dims: [0x7FFF_FFFF, 0x7FFF_FFFF], payload: 4), "huge2", in: dir), ["dimensions"])
    // An MNIST folder whose images are not bytes, or whose labels are not integers, is refused
    // naming the file and the type.
    for (images, labels, words) in [
      (idxBytes(type: 0x0D, dims: [2, 2, 2], payload: 32), idxBytes(dims: [2], payload: 2), ["float32", "unsigned bytes"]),
      (idxBytes(dims: [2, 2, 2]), idxBytes(type: 0x0E, dims: [2], payload: 16), ["float64", "integers"]),
    ] {
      let folder = Fixtures.temporaryDirectory()
      _ = write(images, "train-images-idx3-ubyte", in: folder)
      _ = write(labels, "train-labels-idx1-ubyte", in: folder)
      do {
        _ = try MNIST.loadPair(dir: folder, images: "train-images-idx3-ubyte", labels: "train-labels-idx1-ubyte", name: "x")
        Issue.record("loaded")
      } catch let e as NerveError {
        for w in words { #expect(e.description.contains(w), "\(e)") }
      }
    }
  }

  @Test("a folder whose image and label counts differ is refused, naming both files")
  func countMismatch() throws {
    let dir = Fixtures.temporaryDirectory()
    _ = write(idxBytes(dims: [5, 28, 28]), "train-images-idx3-ubyte", in: dir)
    _ = write(idxBytes(dims: [4]).map { $0 == 7 ? 3 : $0 }, "train-labels-idx1-ubyte", in: dir)
    do {
      _ = try MNIST.loadPair(dir: dir, images: "train-images-idx3-ubyte", labels: "train-labels-idx1-ubyte", name: "t")
      Issue.record("mismatched counts loaded")
    } catch let e as NerveError {
      #expect(e.kind == .shapeMismatch)
      #expect(e.description.contains("5 images") && e.description.contains("4 labels") && e.description.contains("train-labels"), "\(e)")
    }
    let partial = Fixtures.temporaryDirectory()
    _ = write(idxBytes(dims: [5, 28, 28]), "train-images-idx3-ubyte", in: partial)
    _ = write(idxBytes(dims: [5]).map { $0 == 7 ? 3 : $0 }, "train-labels-idx1-ubyte", in: partial)
    do {
      _ = try MNIST.load(from: partial, validationCount: 1)
      Issue.record("a folder without test files loaded")
    } catch let e as NerveError {
      #expect(e.description.contains("t10k-images-idx3-ubyte") && e.message.contains("no such file"), "\(e)")
    }
  }

  @Test("bad digits CSV lines are reported with file, line and field")
  func badCSV() throws {
    let dir = Fixtures.temporaryDirectory()
    let row = (0..<64).map { _ in "3" }.joined(separator: ",")
    let cases: [(String, [String])] = [
      (row + ",5\n" + row + "\n", [":2", "expected 65", "found 64"]),
      (row + ",5\n" + row.replacingOccurrences(of: "3,3,3", with: "3,x,3", options: [], range: row.range(of: "3,3,3")) + ",1\n", [":2", "field 2", "'x'"]),
      (row + ",5\n" + "17" + row.dropFirst(1) + ",2\n", [":2", "pixel 1", "0 to 16"]),
      (row + ",12\n", [":1", "label", "0 to 9"]),
      ("", ["no samples"]),
    ]
    for (i, (text, words)) in cases.enumerated() {
      let path = write(Array(text.utf8), "digits\(i).csv", in: dir)
      do {
        _ = try Digits.load(from: path)
        Issue.record("case \(i) loaded")
      } catch let e as NerveError {
        #expect(e.description.contains(path), "\(e)")
        for w in words { #expect(e.description.contains(w), "case \(i): '\(w)' not in \(e)") }
      }
    }
  }

  /// Gzip-compresses bytes with zlib (for writing test files).
  func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: bytes.count + 1024)
    var stream = z_stream()
    deflateInit2_(&stream, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
    var input = bytes
    let n = input.withUnsafeMutableBufferPointer { inp in
      out.withUnsafeMutableBufferPointer { o in
        stream.next_in = inp.baseAddress
        stream.avail_in = uInt(inp.count)
        stream.next_out = o.baseAddress
        stream.avail_out = uInt(o.count)
        deflate(&stream, Z_FINISH)
        return o.count - Int(stream.avail_out)
      }
    }
    deflateEnd(&stream)
    return Array(out.prefix(n))
  }
}
