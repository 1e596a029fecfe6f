// The manifest CID of a GGUF file (compute_manifest, shard.h), hashed once and then remembered.
//
// Hashing every shard of a large model takes seconds to minutes, and a node restarted on the same
// file would pay it each time. The result is kept in <cache_dir>/model-cids/, one small file per
// model path, valid while the file's path, device, inode, size and modification time stay the same:
// an entry that does not match (the file was replaced or edited, or the entry is damaged) is
// recomputed and rewritten, never trusted and never an error. Entries are written atomically
// (temporary file, rename), so a crash leaves the old entry or the new one.
#pragma once

#include <string>

#include "base/result.h"
#include "gguf/reader.h"
#include "store/cid.h"

namespace omni::store {

// The CID of compute_manifest(file) with the default chunk size. `file` must have been opened from
// a path (gguf::File::open). `cache_dir` empty: no cache, the file is hashed. Failing to write the
// cache (read-only or full disk) is not an error: the CID is still returned. `hashed`, if set, says
// whether the file was hashed (false: the cached CID was used).
Result<Cid> model_cid_of_file(const gguf::File& file, const std::string& cache_dir, bool* hashed = nullptr);

}  // namespace omni::store
