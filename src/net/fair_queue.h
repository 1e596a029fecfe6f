// FairQueue: jobs from many clients, taken out by deficit round robin (DRR) over one FIFO per
// client, so that each client with work waiting gets an equal share of the cost served, however
// many jobs it queues: a client that queues ten times as much as another is served about as much
// as it, not ten times as much. Within a client, jobs keep their order.
//
// Cost is what the scheduler shares (the node uses the tokens of a forward pass). Each turn in the
// round gives a client `quantum` cost units of credit; it runs jobs while its credit covers the
// next one's cost, then the turn passes on. A client that starts queueing joins the end of the
// round. A client whose queue runs dry
// loses its credit, so idle time cannot be saved up for a burst later. With quantum >= the largest
// job, a client never waits more than one round.
//
// Not thread-safe: the owner (ComputeWorker) locks around it. Jobs are moved in and out.
#pragma once

#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <utility>

namespace omni::net {

template <class Job>
class FairQueue {
 public:
  explicit FairQueue(uint64_t quantum) : quantum_(quantum > 0 ? quantum : 1) {}

  void push(const std::string& client, uint64_t cost, Job&& job) {
    Client& c = clients_.try_emplace(client).first->second;
    if (c.jobs.empty()) active_.push_back(client);
    c.jobs.push_back({cost, std::move(job)});
    c.queued_cost += cost;
    ++size_;
    total_cost_ += cost;
  }

  // The next job by DRR; nullopt when nothing is queued.
  std::optional<Job> pop() {
    return pop_if([](const Job&, uint64_t) { return true; });
  }

  // The next job by DRR if fits(job, cost) says it may go now; otherwise nullopt, and that job
  // stays next (the compute worker fills a pass with the jobs that come next in the round).
  template <class Fits>
  std::optional<Job> pop_if(Fits&& fits) {
    while (!active_.empty()) {
      auto it = clients_.find(active_.front());
      Client& c = it->second;
      Entry& head = c.jobs.front();
      if (!c.in_turn) {
        c.in_turn = true;
        c.deficit += quantum_;
      }
      if (c.deficit < head.cost) {
        // Its credit does not cover the job: its turn ends, and the next client's begins.
        c.in_turn = false;
        active_.splice(active_.end(), active_, active_.begin());
        continue;
      }
      if (!fits(static_cast<const Job&>(head.job), head.cost)) return std::nullopt;
      c.deficit -= head.cost;
      Job job = std::move(head.job);
      c.queued_cost -= head.cost;
      total_cost_ -= head.cost;
      --size_;
      c.jobs.pop_front();
      if (c.jobs.empty()) {
        active_.pop_front();
        clients_.erase(it);
      }
      return job;
    }
    return std::nullopt;
  }

  // Drops every job (their destructors run).
  void clear() {
    clients_.clear();
    active_.clear();
    size_ = 0;
    total_cost_ = 0;
  }

  size_t size() const { return size_; }
  uint64_t queued_cost() const { return total_cost_; }
  uint64_t queued_cost(const std::string& client) const {
    auto it = clients_.find(client);
    return it == clients_.end() ? 0 : it->second.queued_cost;
  }

 private:
  struct Entry {
    uint64_t cost;
    Job job;
  };
  struct Client {
    std::deque<Entry> jobs;
    uint64_t deficit = 0;
    uint64_t queued_cost = 0;
    bool in_turn = false;  // it is at the front and has had this round's quantum
  };

  uint64_t quantum_;
  std::map<std::string, Client> clients_;  // only clients with jobs queued
  std::list<std::string> active_;          // the round: clients with jobs, next to visit first
  size_t size_ = 0;
  uint64_t total_cost_ = 0;
};

}  // namespace omni::net
