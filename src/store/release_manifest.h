// A release manifest: what `omni update` may install. The manifest is a JSON file,
//
//   {"version": "0.2.0",
//    "packages": {"amd64": {"url": "https://.../omni_0.2.0_amd64.deb", "sha256": "<64 hex>"}}}
//
// published with a detached signature beside it (URL + ".sig"): the Ed25519 signature of the
// manifest's exact bytes with the project's release key, as 128 hex digits (scripts/sign_release.sh
// makes both). The signature is checked before anything in the manifest is read, so a manifest
// that a mirror or a man in the middle changed is refused as a whole; the package's SHA-256, which
// the signature covers, then ties the package to it.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"
#include "store/hash.h"

namespace omni::store {

using ReleaseKey = std::array<uint8_t, 32>;  // a raw Ed25519 public key

struct ReleasePackage {
  std::string url;  // http:// or https://
  Digest sha256{};
};

struct ReleaseManifest {
  std::string version;                             // dotted numbers, e.g. "0.2.0"
  std::map<std::string, ReleasePackage> packages;  // by Debian architecture (amd64, arm64, ...)
};

// 64 hex digits as a key; InvalidArgument otherwise.
Result<ReleaseKey> parse_release_key(std::string_view hex);

// The manifest, if `signature_hex` is the signature of exactly `manifest` by `key`. Errors: a
// signature that is not 128 hex digits, or does not verify (Corruption: the manifest is not the
// one the key's holder signed); a signed manifest that is not the JSON above (InvalidArgument).
Result<ReleaseManifest> verify_release_manifest(std::span<const uint8_t> manifest, std::string_view signature_hex,
                                                const ReleaseKey& key);

// Orders two versions of dotted whole numbers ("0.10.1" after "0.9"; a missing part is 0):
// negative, 0 or positive as a is older, the same or newer. InvalidArgument for anything else.
Result<int> compare_versions(std::string_view a, std::string_view b);

}  // namespace omni::store
