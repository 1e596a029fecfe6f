// omni update [--check]: installs a newer omni from the project's releases. It reads the release
// manifest at --manifest-url and its signature at the same URL + ".sig" (store/release_manifest.h),
// refuses the manifest unless the signature verifies with the pinned release key, refuses a
// version not newer than this omni's (a downgrade is an error; the same version is "up to date"),
// downloads this architecture's package, refuses it unless its SHA-256 is the manifest's, and only
// then runs the installer (default dpkg -i) on it. --check stops after the version comparison.
// omni-update.timer runs `omni update --check` daily; the URL and the key can be set under
// [update] in /etc/omni/omni.toml.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli_options.h"
#include "commands.h"
#include "store/curl_http_client.h"
#include "store/hash.h"
#include "store/release_manifest.h"

namespace omni::cli {
namespace {

// The project's release key (raw Ed25519 public key). Its private half signs manifests with
// scripts/sign_release.sh and is kept off the repository.
constexpr const char* kReleaseKeyHex = "86b4324195c311c44e94b2727cbd1e9a8d866f559fb0c51ad6314cfb159d6b2b";
constexpr size_t kMaxManifestBytes = 64 << 10;
constexpr uint64_t kMaxPackageBytes = 1ull << 30;

#if defined(__x86_64__)
constexpr const char* kArch = "amd64";
#elif defined(__aarch64__)
constexpr const char* kArch = "arm64";
#else
constexpr const char* kArch = "unknown";
#endif

struct UpdateOptions {
  bool check = false;
  std::string manifest_url;
  std::string release_key = kReleaseKeyHex;
  std::string installer = "dpkg -i";
  std::string download_dir;
};

// GETs `url` into memory, at most `limit` bytes; an HTTP status other than 200 is Unavailable.
Result<std::string> get_small(store::HttpClient& http, const std::string& url, size_t limit) {
  std::string body;
  auto got = http.get(
      {url, {}},
      [&url](const store::HttpResponseHead& head) -> Result<void> {
        if (head.status != 200)
          return Error(ErrorCode::Unavailable, url + ": HTTP status " + std::to_string(head.status));
        return {};
      },
      [&](std::span<const uint8_t> piece) -> Result<void> {
        if (body.size() + piece.size() > limit)
          return Error(ErrorCode::ResourceExhausted, url + ": more than " + std::to_string(limit) + " bytes");
        body.append(reinterpret_cast<const char*>(piece.data()), piece.size());
        return {};
      });
  if (!got) return got.error();
  return body;
}

// Downloads the package into `path`, hashing it on the way; Corruption when its SHA-256 is not `want`.
Result<void> download_package(store::HttpClient& http, const store::ReleasePackage& package, const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Error(ErrorCode::PermissionDenied, "cannot write " + path);
  store::Sha256 hash;
  uint64_t size = 0;
  auto got = http.get(
      {package.url, {}},
      [&package](const store::HttpResponseHead& head) -> Result<void> {
        if (head.status != 200)
          return Error(ErrorCode::Unavailable, package.url + ": HTTP status " + std::to_string(head.status));
        return {};
      },
      [&](std::span<const uint8_t> piece) -> Result<void> {
        size += piece.size();
        if (size > kMaxPackageBytes) return Error(ErrorCode::ResourceExhausted, package.url + ": larger than 1 GiB");
        hash.update(piece);
        out.write(reinterpret_cast<const char*>(piece.data()), static_cast<std::streamsize>(piece.size()));
        if (!out) return Error(ErrorCode::ResourceExhausted, "cannot write " + path + " (disk full?)");
        return {};
      });
  out.close();
  if (!got) return got.error();
  if (hash.finish() != package.sha256)
    return Error(ErrorCode::Corruption, package.url + ": the package's SHA-256 is not the one the signed manifest gives");
  return {};
}

// Runs the installer's words with the package's path added; its output goes to ours.
Result<void> run_installer(const std::string& installer, const std::string& path) {
  std::vector<std::string> words;
  std::istringstream split(installer);
  for (std::string word; split >> word;) words.push_back(word);
  if (words.empty()) return Error(ErrorCode::InvalidArgument, "--installer is empty");
  words.push_back(path);
  std::vector<char*> argv;
  for (auto& word : words) argv.push_back(word.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return Error(ErrorCode::ResourceExhausted, "cannot start the installer");
  if (pid == 0) {
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "omni update: cannot run %s\n", argv[0]);
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return Error(ErrorCode::Internal, "the installer (" + installer + ") failed with status " +
                                          std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)));
  return {};
}

int run_update(const UpdateOptions& o) {
  if (o.manifest_url.empty())
    return fail("update", Error(ErrorCode::InvalidArgument,
                                "no release manifest URL: pass --manifest-url or set manifest-url under [update] in "
                                "/etc/omni/omni.toml"));
  auto key = store::parse_release_key(o.release_key);
  if (!key) return fail("update", key.error().with_context("--release-key"));
  store::CurlHttpClient http;
  auto manifest = get_small(http, o.manifest_url, kMaxManifestBytes);
  if (!manifest) return fail("update", manifest.error());
  auto signature = get_small(http, o.manifest_url + ".sig", 1024);
  if (!signature) return fail("update", signature.error());
  while (!signature->empty() && std::isspace(static_cast<unsigned char>(signature->back()))) signature->pop_back();
  auto release = store::verify_release_manifest(
      {reinterpret_cast<const uint8_t*>(manifest->data()), manifest->size()}, *signature, *key);
  if (!release) return fail("update", release.error().with_context("refusing " + o.manifest_url));
  auto order = store::compare_versions(release->version, OMNI_VERSION);
  if (!order) return fail("update", order.error());
  if (*order < 0)
    return fail("update", Error(ErrorCode::InvalidArgument, "refusing a downgrade: the manifest offers " +
                                                                release->version + ", this is omni " OMNI_VERSION));
  if (*order == 0) {
    std::printf("omni update: omni %s is up to date\n", OMNI_VERSION);
    return kExitOk;
  }
  std::printf("omni update: omni %s is available (this is %s)\n", release->version.c_str(), OMNI_VERSION);
  if (o.check) return kExitOk;
  auto package = release->packages.find(kArch);
  if (package == release->packages.end())
    return fail("update", Error(ErrorCode::NotFound, "the manifest has no package for " + std::string(kArch)));
  std::string dir = o.download_dir;
  if (dir.empty()) {
    std::string pattern = (std::filesystem::temp_directory_path() / "omni-update-XXXXXX").string();
    if (!mkdtemp(pattern.data())) return fail("update", Error(ErrorCode::PermissionDenied, "cannot make a temporary directory"));
    dir = pattern;
  }
  const std::string path = dir + "/omni_" + release->version + "_" + kArch + ".deb";
  auto downloaded = download_package(http, package->second, path);
  if (!downloaded) {
    std::filesystem::remove(path);
    return fail("update", downloaded.error().with_context("refusing the package"));
  }
  std::printf("omni update: %s verified (SHA-256 as signed); installing with %s\n", path.c_str(), o.installer.c_str());
  auto installed = run_installer(o.installer, path);
  std::filesystem::remove(path);
  if (o.download_dir.empty()) std::filesystem::remove(dir);
  if (!installed) return fail("update", installed.error());
  std::printf("omni update: installed omni %s\n", release->version.c_str());
  return kExitOk;
}

}  // namespace

void register_update(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<UpdateOptions>();
  auto* cmd = app.add_subcommand("update", "Install a newer omni from the signed release manifest");
  cmd->add_flag("--check", o->check, "Only say whether a newer version is available");
  cmd->add_option("--manifest-url", o->manifest_url, "http(s) URL of the release manifest (its signature at URL.sig)");
  cmd->add_option("--release-key", o->release_key, "The release key, 64 hex digits (default: the project's)")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            auto key = store::parse_release_key(text);
            return key ? "" : key.error().message;
          },
          "HEX"));
  cmd->add_option("--installer", o->installer, "Command that installs the verified package, its path appended")
      ->capture_default_str();
  cmd->add_option("--download-dir", o->download_dir, "Where the package is downloaded to (default: a temporary directory)");
  cmd->callback([o, &exit_code] { exit_code = run_update(*o); });
}

}  // namespace omni::cli
