// Permits: cotask's named semaphores (asyncio.Semaphore, remotely; a Lock is a limit of 1) as
// one allocator, fair and free of deadlock for tasks that want several at once.
//
// A task claims all of its permits at once (Claim). A claim is granted when, for every
// semaphore it names, it is first in that semaphore's queue and the permits are free; until
// then it waits in the queue of each. Queues are in arrival order, so the oldest waiting claim
// is first in all of its queues: it waits only for permits that holders (running attempts) give
// back, never for another waiting claim. Hence no deadlock (two tasks wanting {x, y} and {y, x}
// both run), and no starvation (a claim wanting several semaphores holds its place in each
// against later ones, however busy they are). The cost is head-of-line blocking: a claim for
// many permits keeps later, smaller ones of the same semaphore waiting, as a fair queue must.
//
// A claim's permits go back when it is released or destroyed, whether it was granted or still
// waiting; either may let the next claims in. Loop thread only (the engine's).
#ifndef COTASK_SCHEDULER_ENGINE_PERMITS_H_
#define COTASK_SCHEDULER_ENGINE_PERMITS_H_

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "cotask/v1/scheduler.pb.h"
#include "scheduler/runtime/event.h"

namespace cotask::engine {

class Permits {
 private:
  struct Semaphore;

 public:
  Permits() = default;
  Permits(const Permits&) = delete;
  Permits& operator=(const Permits&) = delete;
  ~Permits();

  // Declares a semaphore. A second declaration with the same limit changes nothing; with
  // another limit it is ALREADY_EXISTS.
  absl::Status Declare(const std::string& name, int64_t limit);
  // The semaphore's limit, or 0 if there is none of that name.
  int64_t Limit(const std::string& name) const;
  size_t size() const { return semaphores_.size(); }
  // For GetSemaphore; false if there is none of that name.
  bool Describe(const std::string& name, v1::Semaphore* out) const;

  // One task's permits: waiting, then held, then given back (Release or destruction).
  class Claim {
   public:
    Claim(const Claim&) = delete;
    Claim& operator=(const Claim&) = delete;
    ~Claim() { Release(); }

    bool granted() const { return granted_; }
    // Set once the claim is granted.
    runtime::Event& granted_event() { return granted_event_; }
    // Gives the permits back if they were granted, leaves the queues otherwise. Idempotent.
    void Release();

   private:
    friend class Permits;
    struct Entry {
      Semaphore* semaphore;
      int64_t count;
      std::list<Claim*>::iterator position;  // in semaphore->queue, while waiting
    };
    Claim(Permits* owner, std::string holder) : owner_(owner), holder_(std::move(holder)) {}

    Permits* owner_;
    std::string holder_;
    std::vector<Entry> entries_;
    bool granted_ = false;
    bool released_ = false;
    runtime::Event granted_event_;
  };

  // Claims `wanted` for `holder` (a task id). Every semaphore must exist, appear once, and be
  // asked for 1 to its limit permits (the engine validates requests before). The claim is
  // granted at once when it can be (granted_event() is then set already).
  std::unique_ptr<Claim> Acquire(std::string holder,
                                 const google::protobuf::RepeatedPtrField<v1::Permit>& wanted);

 private:
  struct Semaphore {
    std::string name;
    int64_t limit = 0;
    int64_t in_use = 0;
    std::list<Claim*> queue;               // waiting claims, oldest first
    absl::btree_set<std::string> holders;  // tasks holding permits
  };

  bool CanGrant(const Claim& claim) const;
  void Grant(Claim& claim);
  // Grants what can be granted, starting from the first claims of these semaphores.
  void Pump(std::vector<Semaphore*> touched);

  absl::flat_hash_map<std::string, std::unique_ptr<Semaphore>> semaphores_;
};

}  // namespace cotask::engine

#endif  // COTASK_SCHEDULER_ENGINE_PERMITS_H_
