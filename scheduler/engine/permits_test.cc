#include "scheduler/engine/permits.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/status_matchers.h"

namespace cotask::engine {
namespace {

using ::cotask::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

google::protobuf::RepeatedPtrField<v1::Permit> Want(
    const std::vector<std::pair<std::string, int64_t>>& permits) {
  google::protobuf::RepeatedPtrField<v1::Permit> out;
  for (const auto& [name, count] : permits) {
    v1::Permit& permit = *out.Add();
    permit.set_semaphore(name);
    permit.set_count(count);
  }
  return out;
}

v1::Semaphore Describe(const Permits& permits, const std::string& name) {
  v1::Semaphore out;
  EXPECT_TRUE(permits.Describe(name, &out));
  return out;
}

TEST(PermitsTest, DeclareIsIdempotentForTheSameLimitOnly) {
  Permits permits;
  EXPECT_TRUE(permits.Declare("db", 3).ok());
  EXPECT_TRUE(permits.Declare("db", 3).ok());
  EXPECT_THAT(permits.Declare("db", 4),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("exists already with limit 3")));
  EXPECT_EQ(permits.Limit("db"), 3);
  EXPECT_EQ(permits.Limit("nope"), 0);
  v1::Semaphore unused;
  EXPECT_FALSE(permits.Describe("nope", &unused));
}

TEST(PermitsTest, NeverMoreHoldersThanTheLimitAndFirstComeFirstServed) {
  Permits permits;
  ASSERT_TRUE(permits.Declare("s", 2).ok());
  std::vector<std::unique_ptr<Permits::Claim>> claims(5);
  for (int i = 0; i < 5; ++i)
    claims[i] = permits.Acquire("t" + std::to_string(i), Want({{"s", 1}}));
  auto granted = [&] {
    std::vector<int> out;
    for (int i = 0; i < 5; ++i) {
      if (claims[i]->granted()) out.push_back(i);
    }
    return out;
  };
  EXPECT_THAT(granted(), ElementsAre(0, 1));
  EXPECT_TRUE(claims[1]->granted_event().is_set());
  EXPECT_FALSE(claims[2]->granted_event().is_set());
  v1::Semaphore s = Describe(permits, "s");
  EXPECT_EQ(s.in_use(), 2);
  EXPECT_EQ(s.waiting_tasks(), 3);
  EXPECT_THAT(s.holders(), ElementsAre("t0", "t1"));

  claims[1]->Release();
  EXPECT_THAT(granted(), ElementsAre(0, 1, 2));  // 1 stays "granted": it was, and gave back
  EXPECT_EQ(Describe(permits, "s").in_use(), 2);
  EXPECT_THAT(Describe(permits, "s").holders(), ElementsAre("t0", "t2"));
  claims[1]->Release();  // idempotent: nothing more is given back
  EXPECT_EQ(Describe(permits, "s").in_use(), 2);
  EXPECT_FALSE(claims[3]->granted());

  // A waiting claim that leaves lets nobody in by itself, but those behind it move up.
  claims[3].reset();
  EXPECT_FALSE(claims[4]->granted());
  claims[0].reset();
  EXPECT_TRUE(claims[4]->granted());
  EXPECT_EQ(Describe(permits, "s").waiting_tasks(), 0);
}

TEST(PermitsTest, CrossedClaimsBothRunOneAfterTheOther) {
  Permits permits;
  ASSERT_TRUE(permits.Declare("x", 1).ok());
  ASSERT_TRUE(permits.Declare("y", 1).ok());
  auto a = permits.Acquire("a", Want({{"x", 1}, {"y", 1}}));
  auto b = permits.Acquire("b", Want({{"y", 1}, {"x", 1}}));
  EXPECT_TRUE(a->granted());
  EXPECT_FALSE(b->granted());
  a.reset();
  EXPECT_TRUE(b->granted());
  EXPECT_EQ(Describe(permits, "x").in_use(), 1);
  EXPECT_EQ(Describe(permits, "y").in_use(), 1);
  b.reset();
  EXPECT_EQ(Describe(permits, "x").in_use(), 0);
  EXPECT_EQ(Describe(permits, "y").in_use(), 0);
}

TEST(PermitsTest, AClaimForSeveralIsNotStarvedByLaterSmallerOnes) {
  Permits permits;
  ASSERT_TRUE(permits.Declare("x", 2).ok());
  ASSERT_TRUE(permits.Declare("y", 1).ok());
  auto holder = permits.Acquire("h", Want({{"x", 1}}));
  auto big = permits.Acquire("big", Want({{"x", 2}, {"y", 1}}));
  EXPECT_FALSE(big->granted());  // one x is held
  // Later claims for a free x, or the free y, queue behind it instead of taking them.
  auto small_x = permits.Acquire("sx", Want({{"x", 1}}));
  auto small_y = permits.Acquire("sy", Want({{"y", 1}}));
  EXPECT_FALSE(small_x->granted());
  EXPECT_FALSE(small_y->granted());
  holder.reset();
  EXPECT_TRUE(big->granted());
  EXPECT_FALSE(small_x->granted());
  big.reset();
  EXPECT_TRUE(small_x->granted());
  EXPECT_TRUE(small_y->granted());
}

TEST(PermitsTest, ClaimsOnOtherSemaphoresDoNotWait) {
  Permits permits;
  ASSERT_TRUE(permits.Declare("x", 1).ok());
  ASSERT_TRUE(permits.Declare("y", 1).ok());
  auto a = permits.Acquire("a", Want({{"x", 1}}));
  auto b = permits.Acquire("b", Want({{"x", 1}}));
  auto c = permits.Acquire("c", Want({{"y", 1}}));
  EXPECT_TRUE(a->granted());
  EXPECT_FALSE(b->granted());
  EXPECT_TRUE(c->granted());
}

TEST(PermitsTest, OneReleaseLetsInEveryClaimThatNowFits) {
  Permits permits;
  ASSERT_TRUE(permits.Declare("s", 3).ok());
  auto all = permits.Acquire("all", Want({{"s", 3}}));
  std::vector<std::unique_ptr<Permits::Claim>> ones(4);
  for (int i = 0; i < 4; ++i) ones[i] = permits.Acquire("o" + std::to_string(i), Want({{"s", 0}}));
  all.reset();
  EXPECT_TRUE(ones[0]->granted());
  EXPECT_TRUE(ones[1]->granted());
  EXPECT_TRUE(ones[2]->granted());
  EXPECT_FALSE(ones[3]->granted());
  EXPECT_EQ(Describe(permits, "s").in_use(), 3);
}

}  // namespace
}  // namespace cotask::engine
