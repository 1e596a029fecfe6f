# Sampling and chat templates, included from src/model/CMakeLists.txt.
target_sources(omni_model PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/sampler.cpp
  ${CMAKE_CURRENT_LIST_DIR}/speculative_sampling.cpp
  ${CMAKE_CURRENT_LIST_DIR}/chat_template.cpp
)

if(OMNI_BUILD_TESTS)
  omni_add_test(sampler_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/sampler_test.cpp
                LIBS omni_model)
  omni_add_test(speculative_sampling_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/speculative_sampling_test.cpp
                LIBS omni_model)
  omni_add_test(chat_template_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/chat_template_test.cpp
                LIBS omni_model)
endif()
