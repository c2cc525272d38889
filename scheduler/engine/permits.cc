#include "scheduler/engine/permits.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "scheduler/engine/errors.h"
#include "scheduler/runtime/check.h"

namespace cotask::engine {
namespace {

// Holders listed by GetSemaphore.
constexpr int kMaxHoldersListed = 100;

}  // namespace

Permits::~Permits() {
  // Claims may outlive the table only if nobody touches them again; the engine destroys its
  // tasks (and their claims) first.
  for (auto& [name, semaphore] : semaphores_) {
    COTASK_CHECK(semaphore->queue.empty(), "a semaphore destroyed with claims waiting");
  }
}

absl::Status Permits::Declare(const std::string& name, int64_t limit) {
  auto [it, inserted] = semaphores_.try_emplace(name);
  if (inserted) {
    it->second = std::make_unique<Semaphore>();
    it->second->name = name;
    it->second->limit = limit;
    return absl::OkStatus();
  }
  if (it->second->limit == limit) return absl::OkStatus();
  return Error(absl::StatusCode::kAlreadyExists, "SEMAPHORE_EXISTS",
               absl::StrCat("semaphore ", name, " exists already with limit ", it->second->limit),
               {{"semaphore", name}, {"limit", absl::StrCat(it->second->limit)}});
}

int64_t Permits::Limit(const std::string& name) const {
  auto it = semaphores_.find(name);
  return it == semaphores_.end() ? 0 : it->second->limit;
}

bool Permits::Describe(const std::string& name, v1::Semaphore* out) const {
  auto it = semaphores_.find(name);
  if (it == semaphores_.end()) return false;
  const Semaphore& semaphore = *it->second;
  out->set_name(semaphore.name);
  out->set_limit(semaphore.limit);
  out->set_in_use(semaphore.in_use);
  for (const std::string& holder : semaphore.holders) {
    if (out->holders_size() == kMaxHoldersListed) break;
    out->add_holders(holder);
  }
  out->set_waiting_tasks(static_cast<int32_t>(semaphore.queue.size()));
  return true;
}

std::unique_ptr<Permits::Claim> Permits::Acquire(
    std::string holder, const google::protobuf::RepeatedPtrField<v1::Permit>& wanted) {
  std::unique_ptr<Claim> claim(new Claim(this, std::move(holder)));
  bool all_free = true;
  for (const v1::Permit& permit : wanted) {
    auto it = semaphores_.find(permit.semaphore());
    COTASK_CHECK(it != semaphores_.end(), "a claim for an undeclared semaphore");
    Semaphore* semaphore = it->second.get();
    const int64_t count = permit.count() == 0 ? 1 : permit.count();
    COTASK_CHECK(count > 0 && count <= semaphore->limit, "a claim beyond a semaphore's limit");
    claim->entries_.push_back({semaphore, count, {}});
    all_free =
        all_free && semaphore->queue.empty() && semaphore->in_use + count <= semaphore->limit;
  }
  if (all_free) {
    Grant(*claim);
    return claim;
  }
  // Wait in every queue, even those with permits free: the claim keeps its place in each.
  for (Claim::Entry& entry : claim->entries_) {
    entry.position = entry.semaphore->queue.insert(entry.semaphore->queue.end(), claim.get());
  }
  return claim;
}

bool Permits::CanGrant(const Claim& claim) const {
  for (const Claim::Entry& entry : claim.entries_) {
    const Semaphore& semaphore = *entry.semaphore;
    if (semaphore.queue.empty() || semaphore.queue.front() != &claim) return false;
    if (semaphore.in_use + entry.count > semaphore.limit) return false;
  }
  return true;
}

void Permits::Grant(Claim& claim) {
  claim.granted_ = true;
  for (Claim::Entry& entry : claim.entries_) {
    entry.semaphore->in_use += entry.count;
    entry.semaphore->holders.insert(claim.holder_);
  }
  claim.granted_event_.Set();
}

void Permits::Pump(std::vector<Semaphore*> touched) {
  while (!touched.empty()) {
    Semaphore* semaphore = touched.back();
    touched.pop_back();
    if (semaphore->queue.empty()) continue;
    Claim& first = *semaphore->queue.front();
    if (!CanGrant(first)) continue;
    for (Claim::Entry& entry : first.entries_) {
      entry.semaphore->queue.erase(entry.position);
      // The next claim in this queue may fit in what is left.
      touched.push_back(entry.semaphore);
    }
    Grant(first);
  }
}

void Permits::Claim::Release() {
  if (released_) return;
  released_ = true;
  std::vector<Semaphore*> touched;
  for (Entry& entry : entries_) {
    Semaphore& semaphore = *entry.semaphore;
    if (granted_) {
      semaphore.in_use -= entry.count;
      semaphore.holders.erase(holder_);
    } else {
      const bool was_first = semaphore.queue.front() == this;
      semaphore.queue.erase(entry.position);
      if (!was_first) continue;  // those behind it still wait for the one in front
    }
    touched.push_back(&semaphore);
  }
  owner_->Pump(std::move(touched));
}

}  // namespace cotask::engine
