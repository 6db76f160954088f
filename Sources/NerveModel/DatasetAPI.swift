// nerve_dataset_*: the bundled data sets (or MNIST-format folders, the digits CSV) as the CLI
// loads them, copied into caller-owned arrays.
import CNerve
import Foundation
import Nerve

@_cdecl("nerve_dataset_create")
public func nerveDatasetCreate(_ out: UnsafeMutablePointer<OpaquePointer?>?) -> nerve_status {
  guard let out else { return Status.nullPointer }
  out.pointee = OpaquePointer(Unmanaged.passRetained(DatasetHandle()).toOpaque())
  return Status.ok
}

@_cdecl("nerve_dataset_free")
public func nerveDatasetFree(_ d: OpaquePointer?) {
  guard let d else { return }
  Unmanaged<DatasetHandle>.fromOpaque(UnsafeRawPointer(d)).release()
}

@_cdecl("nerve_dataset_last_error")
public func nerveDatasetLastError(_ d: OpaquePointer?) -> UnsafePointer<CChar> {
  guard let h = handle(d, as: DatasetHandle.self) else { return nerveStaticString.noHandle }
  return h.lastError
}

@_cdecl("nerve_dataset_load")
public func nerveDatasetLoad(_ d: OpaquePointer?, _ dataTOML: UnsafePointer<CChar>?) -> nerve_status {
  guard let h = handle(d, as: DatasetHandle.self) else { return Status.nullPointer }
  return h.run("nerve_dataset_load") {
    let text = try string(dataTOML, "data")
    let config = try ExperimentConfig(table: TOMLParser.parse(text, file: "data"), file: "data")
    h.data = try Experiment(config: config).loadData()
  }
}

/// The split a `nerve_split` names (0 train, 1 validation, 2 test); validation may be empty.
func split(_ h: DatasetHandle, _ which: Int32) throws -> Dataset? {
  guard let data = h.data else {
    throw Refusal(status: Status.noModel, message: "the handle holds no data yet: load some (nerve_dataset_load)")
  }
  switch which {
  case 0: return data.train
  case 1: return data.validation
  case 2: return data.test
  default: throw Refusal(status: Status.badArgument, message: "split must be 0 (train), 1 (validation) or 2 (test), got \(which)")
  }
}

@_cdecl("nerve_dataset_size")
public func nerveDatasetSize(
  _ d: OpaquePointer?, _ which: Int32, _ count: UnsafeMutablePointer<Int64>?, _ sampleSize: UnsafeMutablePointer<Int64>?
) -> nerve_status {
  guard let h = handle(d, as: DatasetHandle.self) else { return Status.nullPointer }
  return h.run("nerve_dataset_size") {
    let c = try required(count, "count"), s = try required(sampleSize, "sample_size")
    let data = try split(h, which)
    c.pointee = Int64(data?.count ?? 0)
    s.pointee = Int64(data?.sampleSize ?? h.data!.train.sampleSize)
  }
}

@_cdecl("nerve_dataset_copy")
public func nerveDatasetCopy(
  _ d: OpaquePointer?, _ which: Int32, _ features: UnsafeMutablePointer<Float>?, _ labels: UnsafeMutablePointer<Int32>?
) -> nerve_status {
  guard let h = handle(d, as: DatasetHandle.self) else { return Status.nullPointer }
  return h.run("nerve_dataset_copy") {
    let x = try required(features, "features"), y = try required(labels, "labels")
    guard let data = try split(h, which) else { return }
    data.features.withUnsafeBufferPointer { x.update(from: $0.baseAddress!, count: $0.count) }
    data.labels.withUnsafeBufferPointer { y.update(from: $0.baseAddress!, count: $0.count) }
  }
}

@_cdecl("nerve_dataset_preprocessing")
public func nerveDatasetPreprocessing(_ d: OpaquePointer?) -> UnsafePointer<CChar>? {
  guard let h = handle(d, as: DatasetHandle.self) else { return nil }
  var text: UnsafePointer<CChar>?
  _ = h.run("nerve_dataset_preprocessing") {
    guard let data = h.data else {
      throw Refusal(status: Status.noModel, message: "the handle holds no data yet: load some (nerve_dataset_load)")
    }
    text = h.hand(try json(data.preprocessing))
  }
  return text
}
