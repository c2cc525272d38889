// A doubly linked intrusive list: O(1) push, pop and unlink, no allocation.
// An element derives from ListNode<Tag> once per list it can be on (the Tag tells the hooks
// apart) and unlinks itself when destroyed, so a waiter that dies while queued (a coroutine
// frame destroyed at shutdown) never leaves a dangling node behind.
// Not thread-safe: every list in the runtime belongs to one event loop.
#ifndef COTASK_SCHEDULER_RUNTIME_INTERNAL_INTRUSIVE_LIST_H_
#define COTASK_SCHEDULER_RUNTIME_INTERNAL_INTRUSIVE_LIST_H_

#include <cstddef>

namespace cotask::runtime::internal {

template <class Tag = void>
class ListNode {
 public:
  ListNode() = default;
  ListNode(const ListNode&) = delete;
  ListNode& operator=(const ListNode&) = delete;
  ~ListNode() { Unlink(); }

  bool linked() const { return next_ != nullptr; }

  void Unlink() {
    if (next_ == nullptr) return;
    prev_->next_ = next_;
    next_->prev_ = prev_;
    prev_ = next_ = nullptr;
  }

 private:
  template <class T, class U>
  friend class IntrusiveList;
  ListNode* prev_ = nullptr;
  ListNode* next_ = nullptr;
};

// T must derive from ListNode<Tag>.
template <class T, class Tag = void>
class IntrusiveList {
  using Node = ListNode<Tag>;

 public:
  IntrusiveList() { head_.prev_ = head_.next_ = &head_; }
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;
  // Leaves every element unlinked (each one's linked() is false afterwards).
  ~IntrusiveList() { Clear(); }

  bool empty() const { return head_.next_ == &head_; }

  T* front() const { return empty() ? nullptr : Element(head_.next_); }

  void PushBack(T* element) {
    Node* node = element;
    node->prev_ = head_.prev_;
    node->next_ = &head_;
    head_.prev_->next_ = node;
    head_.prev_ = node;
  }

  T* PopFront() {
    if (empty()) return nullptr;
    Node* node = head_.next_;
    node->Unlink();
    return Element(node);
  }

  void Clear() {
    while (!empty()) head_.next_->Unlink();
  }

  size_t size() const {
    size_t n = 0;
    for (const Node* node = head_.next_; node != &head_; node = node->next_) ++n;
    return n;
  }

  // Calls fn(T*) on each element in order; fn may unlink the element it is given.
  template <class Fn>
  void ForEach(Fn&& fn) {
    for (Node* node = head_.next_; node != &head_;) {
      Node* next = node->next_;
      fn(Element(node));
      node = next;
    }
  }

 private:
  static T* Element(Node* node) { return static_cast<T*>(node); }

  // The sentinel: head_.next_ is the front, head_.prev_ the back.
  mutable Node head_;
};

}  // namespace cotask::runtime::internal

#endif  // COTASK_SCHEDULER_RUNTIME_INTERNAL_INTRUSIVE_LIST_H_
