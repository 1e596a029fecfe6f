// The kj/OpenSSL side of error codes: an Error survives the trip through a kj exception (its code
// and text), RPC prefixes and kj's decorations are removed, untagged exceptions get the code of
// their kind, and OpenSSL's queue text is kept and emptied.
#include "net/errors.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>

namespace omni::net {
namespace {

kj::Exception remote(const kj::Exception& e, int hops) {
  // What a peer receives: capnp adds the prefix once per hop, and keeps the kind.
  std::string text = e.getDescription().cStr();
  for (int i = 0; i < hops; ++i) text = "remote exception: " + text;
  return kj::Exception(e.getType(), "remote", 0, kj::heapString(text.c_str()));
}

TEST(RpcErrors, EveryCodeSurvivesTheTrip) {
  for (ErrorCode code : kAllErrorCodes) {
    const Error sent{code, "node 127.0.0.1:7000 [says] something: about it"};
    for (int hops : {0, 1, 3}) {
      const Error got = to_error(remote(rpc_exception(sent), hops));
      EXPECT_EQ(got.code, code) << to_string(code) << " over " << hops << " hops";
      EXPECT_EQ(got.message, sent.message);
    }
  }
}

TEST(RpcErrors, TheKindMatchesTheCodeForPeersThatReadOnlyTheKind) {
  EXPECT_EQ(rpc_exception(Error{ErrorCode::Unavailable, "x"}).getType(), kj::Exception::Type::DISCONNECTED);
  EXPECT_EQ(rpc_exception(Error{ErrorCode::DeadlineExceeded, "x"}).getType(), kj::Exception::Type::DISCONNECTED);
  EXPECT_EQ(rpc_exception(Error{ErrorCode::ResourceExhausted, "x"}).getType(), kj::Exception::Type::OVERLOADED);
  EXPECT_EQ(rpc_exception(Error{ErrorCode::InvalidArgument, "x"}).getType(), kj::Exception::Type::FAILED);
}

TEST(RpcErrors, ContextKeepsTheCode) {
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([] {
    try {
      throw_rpc_error(ErrorCode::ResourceExhausted, "node is full");
    } catch (const kj::Exception& inner) {
      rethrow_with_context(remote(inner, 1), "next hop 10.0.0.3:7000");
    }
  })) {
    const Error got = to_error(remote(*e, 1));
    EXPECT_EQ(got.code, ErrorCode::ResourceExhausted);
    EXPECT_EQ(got.message, "next hop 10.0.0.3:7000: node is full");
  } else {
    ADD_FAILURE() << "nothing thrown";
  }
}

TEST(RpcErrors, UntaggedExceptionsGetTheCodeOfTheirKind) {
  auto plain = [](kj::Exception::Type type, const char* text) {
    return to_error(kj::Exception(type, "kj", 0, kj::heapString(text)));
  };
  const Error lost = plain(kj::Exception::Type::DISCONNECTED, "remote exception: ::read(): Connection reset by peer");
  EXPECT_EQ(lost.code, ErrorCode::Unavailable);
  EXPECT_EQ(lost.message, "connection lost (::read(): Connection reset by peer)");
  EXPECT_EQ(plain(kj::Exception::Type::OVERLOADED, "busy").code, ErrorCode::ResourceExhausted);
  EXPECT_EQ(plain(kj::Exception::Type::UNIMPLEMENTED, "no such method").code, ErrorCode::InvalidArgument);
  const Error failed = plain(kj::Exception::Type::FAILED, "expected c.ok(); malformed CID");
  EXPECT_EQ(failed.code, ErrorCode::Internal);
  EXPECT_EQ(failed.message, "malformed CID");
  // Brackets that name no code are text, not a tag.
  const Error bracket = plain(kj::Exception::Type::FAILED, "[Teapot] short and stout");
  EXPECT_EQ(bracket.code, ErrorCode::Internal);
  EXPECT_EQ(bracket.message, "[Teapot] short and stout");
}

TEST(OpensslErrors, CarryTheQueueAndEmptyIt) {
  ERR_clear_error();
  // An unknown algorithm name: OpenSSL queues a reason.
  EXPECT_EQ(EVP_PKEY_CTX_new_from_name(nullptr, "no-such-algorithm", nullptr), nullptr);
  ASSERT_NE(ERR_peek_error(), 0u);
  const Error e = openssl_error(ErrorCode::InvalidArgument, "making a key");
  EXPECT_EQ(e.code, ErrorCode::InvalidArgument);
  EXPECT_EQ(e.message.rfind("making a key: ", 0), 0u) << e.message;
  EXPECT_GT(e.message.size(), std::string("making a key: ").size());
  EXPECT_EQ(ERR_peek_error(), 0u);
  EXPECT_EQ(openssl_error(ErrorCode::Internal, "x").message, "x: no OpenSSL error recorded");
}

}  // namespace
}  // namespace omni::net
