// omni inspect FILE: prints a GGUF file's header, metadata and tensor table, as text or JSON.
#include <cinttypes>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli_options.h"
#include "commands.h"
#include "gguf/reader.h"

namespace omni::cli {
namespace {

using nlohmann::json;

json array_to_json(const gguf::Array& a, size_t max_items) {
  json out = json::array();
  size_t n = std::min(a.size(), max_items);
  for (size_t i = 0; i < n; ++i) {
    switch (a.elem_type) {
      case gguf::ValueType::STRING: out.push_back(a.strings[i]); break;
      case gguf::ValueType::ARRAY: out.push_back(array_to_json(a.arrays[i], max_items)); break;
      case gguf::ValueType::BOOL: out.push_back(*a.int_at(i) != 0); break;
      case gguf::ValueType::FLOAT32:
      case gguf::ValueType::FLOAT64: out.push_back(*a.float_at(i)); break;
      case gguf::ValueType::UINT64: {
        uint64_t v;
        std::memcpy(&v, a.raw.data() + i * 8, 8);
        out.push_back(v);
        break;
      }
      default: out.push_back(*a.int_at(i));
    }
  }
  return out;
}

json value_to_json(const gguf::Value& v, size_t max_items) {
  switch (v.type()) {
    case gguf::ValueType::STRING: return *v.as_string();
    case gguf::ValueType::ARRAY: return array_to_json(*v.as_array(), max_items);
    case gguf::ValueType::BOOL: return *v.as_bool();
    case gguf::ValueType::FLOAT32:
    case gguf::ValueType::FLOAT64: return *v.as_float();
    case gguf::ValueType::UINT8:
    case gguf::ValueType::UINT16:
    case gguf::ValueType::UINT32:
    case gguf::ValueType::UINT64: return *v.as_uint();
    default: return *v.as_int();
  }
}

std::string type_label(const gguf::Value& v) {
  std::string label(gguf::value_type_name(v.type()));
  if (const gguf::Array* a = v.as_array())
    label += "[" + std::string(gguf::value_type_name(a->elem_type)) + "; " + std::to_string(a->size()) + "]";
  return label;
}

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? " x " : "") + std::to_string(shape[i]);
  return s;
}

void print_text(const gguf::File& file, size_t max_items, bool with_tensors) {
  uint64_t total = 0;
  for (const auto& t : file.tensors()) total += t.n_bytes;
  std::printf("%s: GGUF v%u, %zu metadata entries, %zu tensors, alignment %" PRIu64 ", data at byte %" PRIu64
              ", %.2f MiB of tensor data\n",
              file.name().c_str(), file.version(), file.metadata().size(), file.tensors().size(), file.alignment(),
              file.data_offset(), static_cast<double>(total) / (1 << 20));
  std::printf("\nmetadata:\n");
  size_t i = 0;
  for (const auto& e : file.metadata().entries())
    std::printf("  %4zu  %-44s %-22s %s\n", ++i, e.key.c_str(), type_label(e.value).c_str(),
                e.value.to_display(max_items).c_str());
  if (!with_tensors) return;
  std::printf("\ntensors:\n  %4s  %-40s %-8s %-24s %14s %12s\n", "#", "name", "type", "shape (ne0 first)",
              "data offset", "bytes");
  i = 0;
  for (const auto& t : file.tensors())
    std::printf("  %4zu  %-40s %-8s %-24s %14" PRIu64 " %12" PRIu64 "\n", ++i, t.name.c_str(),
                gguf::tensor_type_name(t.type).c_str(), shape_text(t.shape).c_str(), t.offset, t.n_bytes);
}

void print_json(const gguf::File& file, size_t max_items, bool with_tensors) {
  json out;
  out["file"] = file.name();
  out["version"] = file.version();
  out["alignment"] = file.alignment();
  out["data_offset"] = file.data_offset();
  json md = json::array();
  for (const auto& e : file.metadata().entries()) {
    json entry{{"key", e.key}, {"type", std::string(gguf::value_type_name(e.value.type()))}};
    if (const gguf::Array* a = e.value.as_array()) {
      entry["element_type"] = std::string(gguf::value_type_name(a->elem_type));
      entry["length"] = a->size();
    }
    entry["value"] = value_to_json(e.value, max_items);
    md.push_back(std::move(entry));
  }
  out["metadata"] = std::move(md);
  if (with_tensors) {
    json tensors = json::array();
    for (const auto& t : file.tensors())
      tensors.push_back({{"name", t.name},
                         {"type", gguf::tensor_type_name(t.type)},
                         {"shape", t.shape},
                         {"offset", t.offset},
                         {"bytes", t.n_bytes}});
    out["tensors"] = std::move(tensors);
  }
  // Token strings need not be valid UTF-8; replace bad bytes rather than fail.
  std::cout << out.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
}

}  // namespace

void register_inspect(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("inspect", "Print a GGUF file's metadata and tensor table");
  auto path = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  auto max_items = std::make_shared<size_t>(0);
  auto no_tensors = std::make_shared<bool>(false);
  auto sha256 = std::make_shared<std::string>();
  cmd->add_option("file", *path, "GGUF file, http(s):// URL or hf:ORG/REPO/FILE.gguf[@REV]")->required();
  add_model_sha256(cmd, *sha256);
  cmd->add_flag("--json", *as_json, "Print JSON (arrays in full unless --max-items is given)");
  cmd->add_option("--max-items", *max_items, "Show at most this many items of each array (text default 8)")
      ->check(count_in(0));
  cmd->add_flag("--no-tensors", *no_tensors, "Omit the tensor table");
  cmd->callback([=, &exit_code] {
    if (auto r = resolve_model(*path, *sha256, "", "inspect"); !r) {
      exit_code = fail("inspect", r.error());
      return;
    }
    auto file = gguf::File::open(*path);
    if (!file) {
      exit_code = fail("inspect", file.error());
      return;
    }
    if (*as_json)
      print_json(*file, *max_items ? *max_items : SIZE_MAX, !*no_tensors);
    else
      print_text(*file, *max_items ? *max_items : 8, !*no_tensors);
  });
}

}  // namespace omni::cli
