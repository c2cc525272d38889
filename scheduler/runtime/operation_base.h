// The tag of every completion-queue operation on an EventLoop's queue.
// An operation passes `this` as the tag; the loop casts the tag back and calls Complete(ok).
// Thread-safety: Complete runs on the loop thread. An operation must outlive its tag: never
// destroy it while the operation is in flight (cancel it, e.g. Alarm::Cancel, and wait for
// Complete(false) instead). At shutdown the loop drains the queue without calling Complete.
#ifndef COTASK_SCHEDULER_RUNTIME_OPERATION_BASE_H_
#define COTASK_SCHEDULER_RUNTIME_OPERATION_BASE_H_

namespace cotask::runtime {

class OperationBase {
 public:
  virtual void Complete(bool ok) = 0;

 protected:
  ~OperationBase() = default;
};

}  // namespace cotask::runtime

#endif  // COTASK_SCHEDULER_RUNTIME_OPERATION_BASE_H_
