#include "model/model_use.hpp"

#include <omp.h>

#include <chrono>
#include <string>
#include <thread>

#include "model/model_impl.hpp"
#include "vae/error.hpp"

namespace vae {
namespace {

void refuse_if_trained_elsewhere(const ModelImpl& m, const char* what) {
  const std::thread::id trainer = m.trained_by.load();
  if (trainer != std::thread::id() && trainer != std::this_thread::get_id())
    throw Error(std::string(what) + ": the model is being trained in another thread; call it when training has "
                "returned, from the training's own callbacks (on_step, on_epoch), or on a copy of the model");
}

}  // namespace

ModelUse::ModelUse(const Model& model, const char* what) : impl_(model.impl()) {
  // Polls rather than blocks: a training that starts while this call waits is noticed within 5 ms.
  refuse_if_trained_elsewhere(impl_, what);
  while (!impl_.use_mutex.try_lock_for(std::chrono::milliseconds(5))) refuse_if_trained_elsewhere(impl_, what);
  // OpenMP keeps its thread count per calling thread: a call from a thread of the user's runs with
  // the process's count (set_num_threads), so that its bits are those of the same call anywhere.
  if (const int n = num_threads(); n > 0 && omp_get_max_threads() != n) omp_set_num_threads(n);
}

ModelUse::~ModelUse() { impl_.use_mutex.unlock(); }

ModelTraining::ModelTraining(Model& model, const char* what)
    : use_(model, what), impl_(model.impl()), outermost_(impl_.trained_by.load() != std::this_thread::get_id()) {
  if (outermost_) impl_.trained_by.store(std::this_thread::get_id());
}

ModelTraining::~ModelTraining() {
  if (outermost_) impl_.trained_by.store(std::thread::id());
}

}  // namespace vae
