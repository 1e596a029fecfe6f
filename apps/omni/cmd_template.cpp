// omni template: prints the prompt a model's chat template renders for a conversation, exactly as
// the gateway and `omni run --chat` render it (model::PromptTemplate), for debugging templates.
//
// --messages FILE.json holds the messages (a JSON array, or an object with "messages" and optionally
// "tools", such as an OpenAI request body); --tools FILE.json a list of tools. With tools, a model
// that carries a named tool_use template (tokenizer.chat_template.tool_use) renders with that one,
// as transformers picks it; --template-name picks any named template. --segments marks the text
// that came from the conversation (tokenized as plain text, never as control tokens) with ⟦ ⟧.
#include <sys/stat.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_options.h"
#include "commands.h"
#include "gguf/reader.h"
#include "model/prompt_template.h"
#include "model/tokenizer.h"

namespace omni::cli {
namespace {

struct TemplateOptions {
  ModelSource model;
  std::string messages_file;
  std::string tools_file;
  std::string template_name;
  bool no_generation_prompt = false;
  bool segments = false;
};

Result<nlohmann::ordered_json> read_json_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Error{ErrorCode::NotFound, "cannot read " + path};
  std::stringstream ss;
  ss << f.rdbuf();
  auto j = nlohmann::ordered_json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error{ErrorCode::InvalidArgument, path + " is not valid JSON"};
  return j;
}

int run_template(TemplateOptions o) {
  auto fail = [](const Error& e) { return cli::fail("template", e); };
  const std::string store_dir = store_dir_or_default(o.model.store_dir, "");
  if (auto r = resolve_model(o.model.model, o.model.sha256, store_dir, "template"); !r) return fail(r.error());
  // A file (or a URL's verified copy) is read for its metadata only; a CID is loaded from --store.
  struct stat st;
  std::unique_ptr<model::Model> loaded_model;
  std::optional<gguf::File> file;
  const gguf::Metadata* md = nullptr;
  if (::stat(o.model.model.c_str(), &st) == 0) {
    auto f = gguf::File::open(o.model.model);
    if (!f) return fail(f.error());
    file = std::move(*f);
    md = &file->metadata();
  } else {
    auto m = load_model(o.model);
    if (!m) return fail(m.error());
    loaded_model = std::move(*m);
    md = &loaded_model->file().metadata();
  }
  auto tok = model::Tokenizer::from_metadata(*md);
  if (!tok) return fail(tok.error());

  auto messages = read_json_file(o.messages_file);
  if (!messages) return fail(messages.error());
  model::ChatInput input;
  if (messages->is_object()) {
    if (!messages->contains("messages")) return fail(Error{ErrorCode::InvalidArgument, o.messages_file + " has no \"messages\""});
    input.messages = (*messages)["messages"];
    if (messages->contains("tools")) input.tools = (*messages)["tools"];
  } else {
    input.messages = *messages;
  }
  if (!input.messages.is_array())
    return fail(Error{ErrorCode::InvalidArgument, o.messages_file + ": the messages must be a JSON array"});
  if (!o.tools_file.empty()) {
    auto tools = read_json_file(o.tools_file);
    if (!tools) return fail(tools.error());
    if (!tools->is_array()) return fail(Error{ErrorCode::InvalidArgument, o.tools_file + ": tools must be a JSON array"});
    input.tools = *tools;
  }
  input.add_generation_prompt = !o.no_generation_prompt;

  std::string name = o.template_name;
  if (name.empty() && input.tools.is_array() && !input.tools.empty() && model::model_chat_template(*md, "tool_use"))
    name = "tool_use";
  auto source = model::model_chat_template(*md, name);
  if (!source)
    return fail(Error{ErrorCode::NotFound, name.empty() ? "the model has no tokenizer.chat_template"
                                                         : "the model has no tokenizer.chat_template." + name});
  auto text_of = [&](std::optional<int32_t> id) { return id ? tok->token_to_piece(*id, true) : std::string(); };
  auto tmpl = model::PromptTemplate::jinja(*source, text_of(tok->bos()), text_of(tok->eos()));
  if (!tmpl) return fail(tmpl.error());
  auto prompt = tmpl->render(input, std::time(nullptr));
  if (!prompt) return fail(prompt.error());
  std::string out;
  for (const model::ChatSegment& s : prompt->segments)
    out += o.segments && s.from_message ? "⟦" + s.text + "⟧" : s.text;
  std::fwrite(out.data(), 1, out.size(), stdout);
  return kExitOk;
}

}  // namespace

void register_template(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("template", "Print the prompt a model's chat template renders for a conversation");
  auto o = std::make_shared<TemplateOptions>();
  add_model_source(cmd, o->model, /*with_store=*/true);
  cmd->add_option("--messages", o->messages_file, "JSON file: the messages (an array, or an object with \"messages\")")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--tools", o->tools_file, "JSON file: the tools (an array of tool definitions)")->check(CLI::ExistingFile);
  cmd->add_option("--template-name", o->template_name,
                  "A named template of the model (tokenizer.chat_template.NAME, e.g. tool_use)");
  cmd->add_flag("--no-generation-prompt", o->no_generation_prompt, "Do not open the assistant's turn at the end");
  cmd->add_flag("--segments", o->segments, "Mark the text taken from the conversation with ⟦ ⟧");
  cmd->callback([o, &exit_code] { exit_code = run_template(*o); });
}

}  // namespace omni::cli
