#include "model/chat_template.h"

#include <gtest/gtest.h>

#include <ctime>
#include <string>
#include <vector>

#include "gguf/reader.h"

namespace omni::model {
namespace {

// The Jinja sources of real templates, as GGUF files carry them (tokenizer.chat_template). Where
// a template's JSON in tokenizer_config.json wrote "\n" the source holds a newline, and where it
// wrote "\\n" the source holds the Jinja escape \n; both render as a newline.
//
// Every expected string below follows from its template rendered the way transformers'
// apply_chat_template renders (trim_blocks and lstrip_blocks on); the comments walk through it.
// Jinja facts they rely on: a filter binds tighter than +, so `'x' + message['content'] | trim`
// trims the content only; trim and str.strip() remove Python whitespace, which includes U+00A0.

// teknium/OpenHermes-2.5-Mistral-7B (as in llama.cpp's tests/test-chat-template.cpp).
constexpr std::string_view kChatML =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content"
    "'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assis"
    "tant\\n' }}{% endif %}";

// Qwen/Qwen2-7B-Instruct: ChatML with a default system turn.
constexpr std::string_view kQwen2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|"
    "im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' "
    "+ message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add"
    "_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

// Qwen/Qwen2.5-7B-Instruct: ChatML, tools, and another default system turn.
constexpr std::string_view kQwen25 = R"TPL({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
)TPL";

// meta-llama/Llama-2-7b-chat-hf.
constexpr std::string_view kLlama2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set syste"
    "m_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set sy"
    "stem_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role']"
    " == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must altern"
    "ate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_mes"
    "sage != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + mes"
    "sage['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message"
    "['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif mes"
    "sage['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% "
    "endfor %}";

// meta-llama/Meta-Llama-3-8B-Instruct, current version.
constexpr std::string_view kLlama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|st"
    "art_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|e"
    "nd_header_id|>\n\n' }}{% endif %}";

// meta-llama/Meta-Llama-3-8B-Instruct, first version: always opens the assistant's turn.
constexpr std::string_view kLlama3First =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|st"
    "art_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";

// meta-llama/Llama-3.2-3B-Instruct (via unsloth): the date line asks for strftime_now.
constexpr std::string_view kLlama32 = R"TPL({{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)TPL";

// mistralai/Mistral-7B-Instruct-v0.2, first template (no system role).
constexpr std::string_view kMistral =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.ind"
    "ex0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/"
    "assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['con"
    "tent'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos"
    "_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% "
    "endif %}{% endfor %}";

// mistralai/Mistral-7B-Instruct-v0.1, first template: a space after each EOS.
constexpr std::string_view kMistralV01 =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.ind"
    "ex0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/"
    "assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['con"
    "tent'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos"
    "_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!'"
    ") }}{% endif %}{% endfor %}";

// Mistral's "v1" template with a system prompt (as in llama.cpp's tests).
constexpr std::string_view kMistralV1 = R"TPL({%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\n\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
)TPL";

// mistralai/Mistral-Large-Instruct-2407, the "v3" template (as in llama.cpp's tests).
constexpr std::string_view kMistralV3 = R"TPL({%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
)TPL";

// mistralai/Mistral-Nemo-Instruct-2407, the "v3-tekken" template (as in llama.cpp's tests).
constexpr std::string_view kMistralNemo = R"TPL({%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS][" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST]" + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST]" + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif (message.tool_calls is defined and message.tool_calls is not none) %}
        {{- "[TOOL_CALLS][" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- message["content"] + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS]{"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
)TPL";

// microsoft/Phi-3-mini-4k-instruct, current version.
constexpr std::string_view kPhi3 =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + messag"
    "e['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['"
    "content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + me"
    "ssage['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<"
    "|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

// microsoft/Phi-3.5-mini-instruct: an empty system message is left out.
constexpr std::string_view kPhi35 =
    "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{"
    "'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{"
    "{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant'"
    " %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}";

// microsoft/Phi-3-small-8k-instruct: any role as <|role|>, BOS first.
constexpr std::string_view kPhi3Small =
    "{{ bos_token }}{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + messa"
    "ge['content'] + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n"
    "' }}{% else %}{{ eos_token }}{% endif %}";

// microsoft/Phi-3-medium-4k-instruct, first version (Phi-3-mini's first one, without BOS, is in
// shared/vocab/ggml-vocab-phi-3.gguf).
constexpr std::string_view kPhi3Medium =
    "{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\\n' + me"
    "ssage['content'] + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}{% elif (message['role'] ="
    "= 'assistant') %}{{message['content'] + '<|end|>' + '\\n'}}{% endif %}{% endfor %}";

// google/gemma-7b-it (gemma-2 has the same).
constexpr std::string_view kGemma =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not"
    " supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') !"
    "= (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assi"
    "stant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set ro"
    "le = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' +"
    " role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_gener"
    "ation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";

// google/gemma-3-*-it.
constexpr std::string_view kGemma3 = R"TPL({{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '

' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '

' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '
' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>
' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model
'}}
{%- endif -%}
)TPL";

// HuggingFaceH4/zephyr-7b-beta.
constexpr std::string_view kZephyr =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + messa"
    "ge['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assist"
    "ant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_genera"
    "tion_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

// The conversation every family renders: a system prompt, then user / assistant / user. The
// assistant's reply and the last question carry whitespace (a no-break space, U+00A0, and a
// newline; a trailing space) so that what trims and what does not is visible.
const std::vector<ChatMessage> kChat = {
    {"system", "You are a helpful assistant."},
    {"user", "Hello"},
    {"assistant", " Hi there!\u00a0\n"},
    {"user", "What is 2+2? "},
};
const std::vector<ChatMessage> kNoSystem(kChat.begin() + 1, kChat.end());

ChatTemplate detect(std::string_view source, std::string_view bos, std::string_view eos,
                    std::string_view name) {
  auto t = ChatTemplate::detect(source, bos, eos);
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
  if (!t.ok()) return ChatTemplate::by_name("chatml", "", "").value();
  EXPECT_EQ(t->name(), name);
  return std::move(t).value();
}

std::string render(const ChatTemplate& t, const std::vector<ChatMessage>& messages, bool prompt) {
  auto out = t.apply(messages, prompt);
  EXPECT_TRUE(out.ok()) << (out.ok() ? "" : out.error().message);
  return out.ok() ? *out : "";
}

// The Error a template raises, without the "chat template NAME: " prefix.
std::string error_of(const ChatTemplate& t, const std::vector<ChatMessage>& messages) {
  auto out = t.apply(messages, true);
  EXPECT_FALSE(out.ok()) << "rendered: " << (out.ok() ? *out : "");
  if (out.ok()) return "";
  EXPECT_EQ(out.error().code, ErrorCode::InvalidArgument) << out.error().message;  // the conversation is at fault
  const std::string prefix = "chat template " + std::string(t.name()) + ": ";
  EXPECT_EQ(out.error().message.rfind(prefix, 0), 0u) << out.error().message;
  return out.error().message.substr(prefix.size());
}

TEST(ChatTemplate, ChatML) {
  // Per message '<|im_start|>' + role + '\n' + content + '<|im_end|>' + '\n', the content as it
  // is; then '<|im_start|>assistant\n' only if add_generation_prompt. No BOS.
  const ChatTemplate t = detect(kChatML, "<s>", "<|im_end|>", "chatml");
  const std::string turns =
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
      "<|im_start|>user\nHello<|im_end|>\n"
      "<|im_start|>assistant\n Hi there!\u00a0\n<|im_end|>\n"
      "<|im_start|>user\nWhat is 2+2? <|im_end|>\n";
  EXPECT_EQ(render(t, kChat, true), turns + "<|im_start|>assistant\n");
  EXPECT_EQ(render(t, kChat, false), turns);
  EXPECT_FALSE(t.renders_bos());
  EXPECT_EQ(t.stop_strings(), std::vector<std::string>{"<|im_end|>"});
}

TEST(ChatTemplate, QwenDefaultSystemTurns) {
  // Qwen2: on the first message, if messages[0] is not a system message, the literal
  // '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' comes first; the rest is
  // ChatML.
  const ChatTemplate qwen2 = detect(kQwen2, "", "<|im_end|>", "chatml");
  const std::string tail =
      "<|im_start|>user\nHello<|im_end|>\n"
      "<|im_start|>assistant\n Hi there!\u00a0\n<|im_end|>\n"
      "<|im_start|>user\nWhat is 2+2? <|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(render(qwen2, kNoSystem, true),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" + tail);
  EXPECT_EQ(render(qwen2, kChat, true),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" + tail);

  // Qwen2.5 without tools: messages[0] if it is a system message, else its own default literal;
  // then every user message, non-first system message and assistant message as ChatML.
  const ChatTemplate qwen25 = detect(kQwen25, "", "<|im_end|>", "chatml");
  EXPECT_EQ(render(qwen25, kNoSystem, true),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n" +
                tail);
  std::vector<ChatMessage> custom = kChat;
  custom[0].content = "Be brief.";
  EXPECT_EQ(render(qwen25, custom, true), "<|im_start|>system\nBe brief.<|im_end|>\n" + tail);
}

TEST(ChatTemplate, Llama2) {
  // messages[0] is the system message: it is folded into the first user turn as
  // '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + content. User turns are
  // bos_token + '[INST] ' + content.strip() + ' [/INST]', assistant turns
  // ' ' + content.strip() + ' ' + eos_token. strip() removes the reply's U+00A0 and newline and
  // the question's trailing space. add_generation_prompt is not used.
  const ChatTemplate t = detect(kLlama2, "<s>", "</s>", "llama2");
  const std::string want =
      "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello [/INST]"
      " Hi there! </s>"
      "<s>[INST] What is 2+2? [/INST]";
  EXPECT_EQ(render(t, kChat, true), want);
  EXPECT_EQ(render(t, kChat, false), want);
  EXPECT_EQ(render(t, kNoSystem, true),
            "<s>[INST] Hello [/INST] Hi there! </s><s>[INST] What is 2+2? [/INST]");
  EXPECT_TRUE(t.renders_bos());
  EXPECT_EQ(error_of(t, {{"user", "a"}, {"user", "b"}}),
            "Conversation roles must alternate user/assistant/user/assistant/...");
}

TEST(ChatTemplate, Llama3) {
  // Per message '<|start_header_id|>' + role + '<|end_header_id|>\n\n' + content|trim +
  // '<|eot_id|>', bos_token before the first; '<|start_header_id|>assistant<|end_header_id|>\n\n'
  // if add_generation_prompt (the first version writes it unconditionally).
  const ChatTemplate t = detect(kLlama3, "<|begin_of_text|>", "<|eot_id|>", "llama3");
  const std::string turns =
      "<|begin_of_text|>"
      "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\nHi there!<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>";
  const std::string prompt = "<|start_header_id|>assistant<|end_header_id|>\n\n";
  EXPECT_EQ(render(t, kChat, true), turns + prompt);
  EXPECT_EQ(render(t, kChat, false), turns);
  EXPECT_TRUE(t.renders_bos());
  EXPECT_EQ(t.stop_strings(), (std::vector<std::string>{"<|eot_id|>"}));

  const ChatTemplate first = detect(kLlama3First, "<|begin_of_text|>", "<|eot_id|>", "llama3");
  EXPECT_EQ(render(first, kChat, false), turns + prompt);
}

std::string today() {
  const std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%d %b %Y", std::localtime(&now));
  return buf;
}

TEST(ChatTemplate, Llama31And32) {
  // bos_token; a system header that is always there: 'Cutting Knowledge Date: December 2023\n',
  // 'Today Date: ' + date_string + '\n\n', the system message |trim (or ""), '<|eot_id|>'. Then
  // the other messages as in Llama 3, and the assistant header if add_generation_prompt.
  // date_string is strftime_now("%d %b %Y") where the template asks for it and transformers
  // provides it (3.2), else "26 Jul 2024" (3.1, and 3.2 elsewhere).
  const ChatTemplate t = detect(kLlama32, "<|begin_of_text|>", "<|eot_id|>", "llama3.1");
  auto expected = [](const std::string& date, const std::string& system) {
    return "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
           "Cutting Knowledge Date: December 2023\nToday Date: " +
           date + "\n\n" + system +
           "<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nHi there!<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n";
  };
  const std::string before = today();
  const std::string got = render(t, kChat, true);
  const std::string after = today();  // in case the date changed meanwhile
  EXPECT_TRUE(got == expected(before, "You are a helpful assistant.") ||
              got == expected(after, "You are a helpful assistant."))
      << got;

  const ChatTemplate llama31 =
      ChatTemplate::by_name("llama3.1", "<|begin_of_text|>", "<|eot_id|>").value();
  EXPECT_EQ(render(llama31, kChat, true), expected("26 Jul 2024", "You are a helpful assistant."));
  EXPECT_EQ(render(llama31, kNoSystem, true), expected("26 Jul 2024", ""));
}

TEST(ChatTemplate, MistralFirstTemplates) {
  // bos_token; roles must alternate starting with user, and any other role is refused, so the
  // system message is an error. User turns '[INST] ' + content + ' [/INST]' (content as it is:
  // the question's trailing space stays), assistant turns content + eos_token (v0.1: + ' ').
  const ChatTemplate t = detect(kMistral, "<s>", "</s>", "mistral");
  EXPECT_EQ(render(t, kNoSystem, true),
            "<s>[INST] Hello [/INST] Hi there!\u00a0\n</s>[INST] What is 2+2?  [/INST]");
  EXPECT_EQ(error_of(t, kChat),
            "Conversation roles must alternate user/assistant/user/assistant/...");
  EXPECT_EQ(error_of(t, {{"user", "a"}, {"system", "b"}}),
            "Only user and assistant roles are supported!");
  EXPECT_EQ(t.stop_strings(), std::vector<std::string>{"</s>"});

  const ChatTemplate v01 = detect(kMistralV01, "<s>", "</s>", "mistral");
  EXPECT_EQ(render(v01, kNoSystem, false),
            "<s>[INST] Hello [/INST] Hi there!\u00a0\n</s> [INST] What is 2+2?  [/INST]");
}

TEST(ChatTemplate, MistralV1) {
  // A leading system message is taken out; bos_token; user turns ' [INST] ' + content +
  // ' [/INST]', the first one with system + '\n\n' before the content; assistant turns
  // ' ' + content + eos_token.
  const ChatTemplate t = detect(kMistralV1, "<s>", "</s>", "mistral-v1");
  EXPECT_EQ(render(t, kChat, true),
            "<s> [INST] You are a helpful assistant.\n\nHello [/INST]  Hi there!\u00a0\n</s>"
            " [INST] What is 2+2?  [/INST]");
  EXPECT_EQ(error_of(t, {{"user", "a"}, {"user", "b"}}),
            "After the optional system message, conversation roles must alternate "
            "user/assistant/user/assistant/...");
}

TEST(ChatTemplate, MistralV3) {
  // A leading system message is taken out; bos_token; the system text goes, + '\n\n', into the
  // LAST message if that is a user turn (and is lost otherwise). v3: '[INST] ' + content +
  // '[/INST]' and ' ' + content|trim + eos_token. Tekken: '[INST]' + content + '[/INST]' and
  // content + eos_token.
  const ChatTemplate v3 = detect(kMistralV3, "<s>", "</s>", "mistral-v3");
  EXPECT_EQ(render(v3, kChat, true),
            "<s>[INST] Hello[/INST] Hi there!</s>"
            "[INST] You are a helpful assistant.\n\nWhat is 2+2? [/INST]");
  const std::vector<ChatMessage> ends_with_reply(kChat.begin(), kChat.begin() + 3);
  EXPECT_EQ(render(v3, ends_with_reply, true), "<s>[INST] Hello[/INST] Hi there!</s>");

  const ChatTemplate nemo = detect(kMistralNemo, "<s>", "</s>", "mistral-v3-tekken");
  EXPECT_EQ(render(nemo, kChat, true),
            "<s>[INST]Hello[/INST] Hi there!\u00a0\n</s>"
            "[INST]You are a helpful assistant.\n\nWhat is 2+2? [/INST]");
  EXPECT_EQ(error_of(nemo, {{"system", "s"}, {"assistant", "a"}}),
            "After the optional system message, conversation roles must alternate "
            "user/assistant/user/assistant/...");
}

TEST(ChatTemplate, Phi3) {
  // Per message '<|' + role + '|>\n' + content + '<|end|>\n' (system, user, assistant), content
  // as it is; then '<|assistant|>\n' if add_generation_prompt, else eos_token. No BOS.
  const ChatTemplate t = detect(kPhi3, "<s>", "<|endoftext|>", "phi3");
  const std::string turns =
      "<|system|>\nYou are a helpful assistant.<|end|>\n"
      "<|user|>\nHello<|end|>\n"
      "<|assistant|>\n Hi there!\u00a0\n<|end|>\n"
      "<|user|>\nWhat is 2+2? <|end|>\n";
  EXPECT_EQ(render(t, kChat, true), turns + "<|assistant|>\n");
  EXPECT_EQ(render(t, kChat, false), turns + "<|endoftext|>");
  EXPECT_FALSE(t.renders_bos());
  EXPECT_EQ(t.stop_strings(), (std::vector<std::string>{"<|end|>", "<|endoftext|>"}));

  // Phi-3.5 skips a system message whose content is empty; Phi-3 writes it.
  std::vector<ChatMessage> empty_system = kChat;
  empty_system[0].content = "";
  const std::string rest = turns.substr(turns.find("<|user|>"));
  EXPECT_EQ(render(t, empty_system, true), "<|system|>\n<|end|>\n" + rest + "<|assistant|>\n");
  const ChatTemplate phi35 = detect(kPhi35, "<s>", "<|endoftext|>", "phi3");
  EXPECT_EQ(render(phi35, empty_system, true), rest + "<|assistant|>\n");

  // Phi-3-small: bos_token first, then the same turns.
  const ChatTemplate small = detect(kPhi3Small, "<|endoftext|>", "<|endoftext|>", "phi3");
  EXPECT_EQ(render(small, kChat, true), "<|endoftext|>" + turns + "<|assistant|>\n");
}

TEST(ChatTemplate, Phi3LegacyFromSharedVocab) {
  // The template in shared/vocab/ggml-vocab-phi-3.gguf: bos_token; user turns
  // '<|user|>' + '\n' + content + '<|end|>' + '\n' + '<|assistant|>' + '\n', assistant turns
  // content + '<|end|>' + '\n'; system messages match no branch and vanish; add_generation_prompt
  // is never read. Phi-3-medium's first template is the same without bos_token.
  auto file = gguf::File::open(OMNI_SHARED_DIR "/vocab/ggml-vocab-phi-3.gguf");
  ASSERT_TRUE(file.ok()) << file.error().message;
  const gguf::Value* v = file->metadata().find("tokenizer.chat_template");
  ASSERT_NE(v, nullptr);
  ASSERT_NE(v->as_string(), nullptr);
  const ChatTemplate t = detect(*v->as_string(), "<s>", "<|endoftext|>", "phi3-legacy");
  const std::string turns =
      "<|user|>\nHello<|end|>\n<|assistant|>\n"
      " Hi there!\u00a0\n<|end|>\n"
      "<|user|>\nWhat is 2+2? <|end|>\n<|assistant|>\n";
  EXPECT_EQ(render(t, kChat, true), "<s>" + turns);
  EXPECT_EQ(render(t, kChat, false), "<s>" + turns);
  EXPECT_TRUE(t.renders_bos());

  const ChatTemplate named = ChatTemplate::by_name("phi3-legacy", "<s>", "<|endoftext|>").value();
  EXPECT_EQ(render(named, kChat, true), "<s>" + turns);

  const ChatTemplate medium = detect(kPhi3Medium, "<s>", "<|endoftext|>", "phi3-legacy");
  EXPECT_EQ(render(medium, kNoSystem, false), turns);
  EXPECT_FALSE(medium.renders_bos());
}

TEST(ChatTemplate, Gemma) {
  // bos_token; a system message first raises 'System role not supported'; roles alternate from
  // user; per message '<start_of_turn>' + ('model' for assistant) + '\n' + content|trim +
  // '<end_of_turn>\n'; '<start_of_turn>model\n' if add_generation_prompt.
  const ChatTemplate t = detect(kGemma, "<bos>", "<eos>", "gemma");
  EXPECT_EQ(error_of(t, kChat), "System role not supported");
  const std::string turns =
      "<bos><start_of_turn>user\nHello<end_of_turn>\n"
      "<start_of_turn>model\nHi there!<end_of_turn>\n"
      "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n";
  EXPECT_EQ(render(t, kNoSystem, true), turns + "<start_of_turn>model\n");
  EXPECT_EQ(render(t, kNoSystem, false), turns);
  EXPECT_EQ(error_of(t, {{"assistant", "a"}}),
            "Conversation roles must alternate user/assistant/user/assistant/...");
  EXPECT_EQ(t.stop_strings(), (std::vector<std::string>{"<end_of_turn>", "<eos>"}));
}

TEST(ChatTemplate, Gemma3) {
  // As Gemma, but a leading system message becomes first_user_prefix = content + '\n\n', written
  // after the first turn's '<start_of_turn>user\n' and before its trimmed content. The
  // '{%- ... -%}' tags strip the source's newlines and indentation around them.
  const ChatTemplate t = detect(kGemma3, "<bos>", "<eos>", "gemma3");
  EXPECT_EQ(render(t, kChat, true),
            "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nHello<end_of_turn>\n"
            "<start_of_turn>model\nHi there!<end_of_turn>\n"
            "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
            "<start_of_turn>model\n");
}

TEST(ChatTemplate, Zephyr) {
  // Per message '<|' + role + '|>\n' + content + eos_token, and the '\n' after each '}}' in the
  // source (trim_blocks removes only the newlines after '%}'); after the last message,
  // '<|assistant|>' and its '\n' if add_generation_prompt. No BOS.
  const ChatTemplate t = detect(kZephyr, "<s>", "</s>", "zephyr");
  const std::string turns =
      "<|system|>\nYou are a helpful assistant.</s>\n"
      "<|user|>\nHello</s>\n"
      "<|assistant|>\n Hi there!\u00a0\n</s>\n"
      "<|user|>\nWhat is 2+2? </s>\n";
  EXPECT_EQ(render(t, kChat, true), turns + "<|assistant|>\n");
  EXPECT_EQ(render(t, kChat, false), turns);
  EXPECT_EQ(t.stop_strings(), std::vector<std::string>{"</s>"});
}

TEST(ChatTemplate, ByNameRendersTheReferenceTemplates) {
  struct Case {
    std::string_view name;
    std::string_view source;
    std::vector<ChatMessage> messages;
  };
  const std::vector<Case> cases = {
      {"chatml", kChatML, kChat},
      {"llama2", kLlama2, kChat},
      {"llama3", kLlama3, kChat},
      {"mistral", kMistral, kNoSystem},
      {"mistral-v1", kMistralV1, kChat},
      {"mistral-v3", kMistralV3, kChat},
      {"mistral-v3-tekken", kMistralNemo, kChat},
      {"phi3", kPhi3, kChat},
      {"gemma", kGemma, kNoSystem},
      {"gemma3", kGemma3, kChat},
      {"zephyr", kZephyr, kChat},
  };
  for (const Case& c : cases) {
    const ChatTemplate named = ChatTemplate::by_name(c.name, "<s>", "</s>").value();
    EXPECT_EQ(named.name(), c.name);
    const ChatTemplate detected = detect(c.source, "<s>", "</s>", c.name);
    for (bool prompt : {true, false}) {
      EXPECT_EQ(render(named, c.messages, prompt), render(detected, c.messages, prompt)) << c.name;
    }
    EXPECT_EQ(named.renders_bos(), detected.renders_bos()) << c.name;
  }
  auto unknown = ChatTemplate::by_name("vicuna", "", "");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(unknown.error().message.find("\"vicuna\""), std::string::npos);
  EXPECT_NE(unknown.error().message.find("mistral-v3-tekken"), std::string::npos);
}

TEST(ChatTemplate, RenderKeepsMessagesApartFromMarkup) {
  // Each message wrapped in \x01 marks (no whitespace at its ends, so no template trims it) and
  // holding other formats' markup: every mark lands in a message segment, none in the markup.
  const std::string body = "<|im_end|>\n<|assistant|>[INST]</s><start_of_turn>";
  const std::vector<ChatMessage> chat = {{"system", "\x01s" + body + "\x01"},
                                         {"user", "\x01u" + body + "\x01"},
                                         {"assistant", "\x01a" + body + "\x01"},
                                         {"user", "\x01v" + body + "\x01"}};
  const std::vector<ChatMessage> no_system(chat.begin() + 1, chat.end());
  for (std::string_view name : {"chatml", "llama2", "llama3", "llama3.1", "mistral", "mistral-v1", "mistral-v3",
                                "mistral-v3-tekken", "phi3", "phi3-legacy", "gemma", "gemma3", "zephyr"}) {
    const ChatTemplate t = ChatTemplate::by_name(name, "<s>", "</s>").value();
    const bool system_allowed = name != "mistral" && name != "gemma";
    const auto& messages = system_allowed ? chat : no_system;
    auto prompt = t.render(messages, true);
    ASSERT_TRUE(prompt.ok()) << name << ": " << prompt.error().message;
    EXPECT_EQ(prompt->text(), render(t, messages, true)) << name;
    std::string from_messages;
    for (size_t i = 0; i < prompt->segments.size(); ++i) {
      const ChatSegment& seg = prompt->segments[i];
      EXPECT_FALSE(seg.text.empty()) << name;
      if (i > 0) {
        EXPECT_NE(seg.from_message, prompt->segments[i - 1].from_message) << name;
      }
      if (seg.from_message) {
        from_messages += seg.text;
      } else {
        EXPECT_EQ(seg.text.find('\x01'), std::string::npos) << name << ": a message in the markup: " << seg.text;
      }
    }
    // Every message the format renders is in the message segments whole (phi3-legacy drops the
    // system message, as its reference does).
    for (const ChatMessage& m : messages) {
      if (name == "phi3-legacy" && m.role == "system") continue;
      EXPECT_NE(from_messages.find(m.content), std::string::npos) << name << ": " << m.role;
    }
  }
  // llama2 trims the system-and-question block as a whole: a blank question takes the markup's
  // trailing newlines with it, as the reference does.
  const ChatTemplate llama2 = ChatTemplate::by_name("llama2", "<s>", "</s>").value();
  EXPECT_EQ(render(llama2, {{"system", "S"}, {"user", " \n"}}, true), "<s>[INST] <<SYS>>\nS\n<</SYS>> [/INST]");
}

TEST(ChatTemplate, UnrecognizedTemplateIsAnErrorThatQuotesIt) {
  // lmsys/vicuna style: none of the families' markers.
  const std::string vicuna =
      "{%- for message in messages %}{%- if message['role'] == 'system' -%}{{- '' + "
      "message['content'] + '\\n\\n' -}}{%- else -%}{%- if message['role'] == 'user' -%}"
      "{{-'USER: ' + message['content'] + '\\n'-}}{%- else -%}{{-'ASSISTANT: ' + "
      "message['content'] + '</s>\\n' -}}{%- endif -%}{%- endif -%}{%- endfor -%}";
  auto t = ChatTemplate::detect(vicuna, "<s>", "</s>");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(
      t.error().message.find("unrecognized chat template \"" + vicuna.substr(0, 80) + "...\""),
      std::string::npos)
      << t.error().message;

  auto empty = ChatTemplate::detect("", "<s>", "</s>");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, ErrorCode::NotFound);
  EXPECT_NE(empty.error().message.find("chatml"), std::string::npos);
}

TEST(ChatTemplate, RefusesUnsupportedRolesAndEmptyConversations) {
  const ChatTemplate t = ChatTemplate::by_name("chatml", "", "").value();
  EXPECT_EQ(error_of(t, {{"user", "hi"}, {"tool", "42"}}), "role \"tool\" is not supported");
  EXPECT_EQ(error_of(t, {}), "no messages");
}

}  // namespace
}  // namespace omni::model
