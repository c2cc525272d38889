// DaemonSuite<Flags>: a GoogleTest suite that shares one cotaskd, started with Flags::Args()
// before its first test and stopped after its last.
#ifndef COTASK_TESTS_DAEMON_SUITE_H_
#define COTASK_TESTS_DAEMON_SUITE_H_

#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "tests/daemon.h"

namespace cotask::testing {

template <class Flags>
class DaemonSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto daemon = StartDaemon(Flags::Args());
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = new Daemon(std::move(*daemon));
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(daemon_, nullptr) << "cotaskd did not start"; }

  static inline Daemon* daemon_ = nullptr;
};

}  // namespace cotask::testing

#endif  // COTASK_TESTS_DAEMON_SUITE_H_
