// What a --model argument names, and turning it into something a command can load: a GGUF file
// path (given, or the verified copy of a URL in the store) or a model CID.
//
//   FILE                          a GGUF file (an existing path always wins, whatever it looks like)
//   CID                           a model CID (bafkrei...): its shards in a store or on peers
//   http://... https://...        a GGUF file on a web server
//   hf:ORG/REPO/PATH.gguf[@REV]   https://huggingface.co/ORG/REPO/resolve/REV/PATH.gguf (REV: main);
//                                 the environment's HF_ENDPOINT replaces https://huggingface.co, as
//                                 in Hugging Face's own tools (a mirror); HF_TOKEN, when set, is
//                                 sent to that host (gated repositories), not where it redirects
//
// A URL is downloaded once into the store (model_download.h) and later resolved offline.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "store/cid.h"
#include "store/model_download.h"

namespace omni::store {

struct ModelSource {
  enum class Kind { File, Cid, Url };
  Kind kind = Kind::File;
  std::string text;       // as given
  std::string url;        // Url: the http(s) URL to fetch (an hf: name expanded)
  std::string file_name;  // Url: the name the file is kept under (the URL path's last segment)
  bool hugging_face = false;  // Url: from an hf: name
  std::optional<Cid> cid; // Cid
};

// Classifies `text`. A path that does not exist and is neither a CID nor a URL is Kind::File (the
// load then says it is missing). Errors (InvalidArgument): an hf: name that is not
// ORG/REPO/PATH[@REV], a URL with no host or no file name, an HF_ENDPOINT that is no http(s) URL.
Result<ModelSource> parse_model_source(std::string_view text);

inline constexpr std::string_view kHuggingFaceEndpoint = "https://huggingface.co";
// The resolve URL of an hf: name (without the "hf:" prefix) on `endpoint`.
Result<std::string> hugging_face_url(std::string_view name, std::string_view endpoint = kHuggingFaceEndpoint);

struct ResolvedModel {
  ModelSource source;
  // What the command loads: the file's path (for a URL, its copy in the store, named like the URL's
  // file), or the CID's text.
  std::string model;
  bool downloaded = false;  // this call fetched bytes over the network
};

// Resolves a --model argument: a file or CID is returned as it is; a URL is fetched into
// options.store_dir (or found there from an earlier call) and verified (fetch_model_url).
Result<ResolvedModel> resolve_model_source(std::string_view text, const ModelFetchOptions& options);

}  // namespace omni::store
