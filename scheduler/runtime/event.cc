#include "scheduler/runtime/event.h"

namespace cotask::runtime {

void Event::Set() {
  if (set_) return;
  set_ = true;
  while (internal::WaitNode* waiter = waiters_.PopFront()) waiter->Wake();
}

}  // namespace cotask::runtime
