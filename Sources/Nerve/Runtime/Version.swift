// The library's version: one number, kept in include/nerve.h (NERVE_VERSION_*).
import CNerve

/// The library version, "MAJOR.MINOR.PATCH", as the C core reports it.
public let nerveVersion = String(cString: nerve_version_string())
