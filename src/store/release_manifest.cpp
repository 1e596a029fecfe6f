#include "store/release_manifest.h"

#include <openssl/evp.h>

#include <charconv>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "store/model_download.h"

namespace omni::store {
namespace {

bool hex_bytes(std::string_view hex, std::vector<uint8_t>& out) {
  if (hex.size() % 2) return false;
  out.clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    uint8_t byte = 0;
    auto [end, ec] = std::from_chars(hex.data() + i, hex.data() + i + 2, byte, 16);
    if (ec != std::errc() || end != hex.data() + i + 2) return false;
    out.push_back(byte);
  }
  return true;
}

Result<std::vector<uint64_t>> version_parts(std::string_view text) {
  std::vector<uint64_t> parts;
  size_t at = 0;
  while (true) {
    const size_t dot = text.find('.', at);
    const std::string_view part = text.substr(at, dot == std::string_view::npos ? text.size() - at : dot - at);
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), value);
    if (part.empty() || ec != std::errc() || end != part.data() + part.size())
      return Error(ErrorCode::InvalidArgument, "version '" + std::string(text) + "' is not dotted whole numbers");
    parts.push_back(value);
    if (dot == std::string_view::npos) return parts;
    at = dot + 1;
  }
}

}  // namespace

Result<ReleaseKey> parse_release_key(std::string_view hex) {
  std::vector<uint8_t> bytes;
  if (hex.size() != 64 || !hex_bytes(hex, bytes))
    return Error(ErrorCode::InvalidArgument, "a release key is 64 hex digits (a raw Ed25519 public key)");
  ReleaseKey key;
  std::copy(bytes.begin(), bytes.end(), key.begin());
  return key;
}

Result<ReleaseManifest> verify_release_manifest(std::span<const uint8_t> manifest, std::string_view signature_hex,
                                                const ReleaseKey& key) {
  std::vector<uint8_t> signature;
  if (signature_hex.size() != 128 || !hex_bytes(signature_hex, signature))
    return Error(ErrorCode::Corruption, "the manifest's signature is not 128 hex digits");
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, key.data(), key.size()), EVP_PKEY_free);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!pkey || !ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) != 1)
    return Error(ErrorCode::Internal, "cannot set up Ed25519 verification");
  if (EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), manifest.data(), manifest.size()) != 1)
    return Error(ErrorCode::Corruption,
                 "the manifest's signature does not verify with the release key: it was changed or not signed by it");

  nlohmann::json json = nlohmann::json::parse(manifest.begin(), manifest.end(), nullptr, false);
  auto malformed = [](const std::string& what) {
    return Error(ErrorCode::InvalidArgument, "signed manifest: " + what);
  };
  if (!json.is_object()) return malformed("not a JSON object");
  ReleaseManifest out;
  if (!json.contains("version") || !json["version"].is_string()) return malformed("no \"version\" string");
  out.version = json["version"].get<std::string>();
  if (auto parts = version_parts(out.version); !parts) return malformed(parts.error().message);
  if (!json.contains("packages") || !json["packages"].is_object()) return malformed("no \"packages\" object");
  for (const auto& [arch, entry] : json["packages"].items()) {
    if (!entry.is_object() || !entry.contains("url") || !entry["url"].is_string() || !entry.contains("sha256") ||
        !entry["sha256"].is_string())
      return malformed("package \"" + arch + "\" wants \"url\" and \"sha256\" strings");
    ReleasePackage package;
    package.url = entry["url"].get<std::string>();
    if (package.url.rfind("http://", 0) != 0 && package.url.rfind("https://", 0) != 0)
      return malformed("package \"" + arch + "\": url is not http(s)");
    auto digest = parse_sha256_hex(entry["sha256"].get<std::string>());
    if (!digest) return malformed("package \"" + arch + "\": " + digest.error().message);
    package.sha256 = *digest;
    out.packages.emplace(arch, std::move(package));
  }
  return out;
}

Result<int> compare_versions(std::string_view a, std::string_view b) {
  auto pa = version_parts(a);
  if (!pa) return pa.error();
  auto pb = version_parts(b);
  if (!pb) return pb.error();
  for (size_t i = 0; i < std::max(pa->size(), pb->size()); ++i) {
    const uint64_t x = i < pa->size() ? (*pa)[i] : 0;
    const uint64_t y = i < pb->size() ? (*pb)[i] : 0;
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

}  // namespace omni::store
