// One call at a time on a model. Every library entry point that runs or reads a model (Model's own
// encode and decode, generate.hpp's and train.hpp's functions, checkpoints, the Trainer) holds a
// ModelUse for its duration: the workspace, the backend's plans and the parameters belong to one
// call at a time, so calls from several threads give what each would alone. The lock is recursive:
// entry points call each other, and a training's callbacks (same thread) may use the model.
// A call never waits for a training in another thread: training lasts minutes to days, so such a
// call is refused at once with a message saying when it may be made (and a Python thread holding
// the interpreter lock can never wait on a training thread that needs that lock for its callbacks).
#pragma once

#include <mutex>

#include "vae/model.hpp"

namespace vae {

class ModelUse {
 public:
  // Waits until no other thread is in a call on the model; throws vae::Error naming `what` when
  // another thread is training it.
  ModelUse(const Model& model, const char* what);
  ~ModelUse();
  ModelUse(const ModelUse&) = delete;
  ModelUse& operator=(const ModelUse&) = delete;

 private:
  const ModelImpl& impl_;
};

// A ModelUse that also marks the model as being trained by this thread (Trainer::step and fit), so
// that other threads' calls are refused rather than left waiting for the whole training.
class ModelTraining {
 public:
  ModelTraining(Model& model, const char* what);
  ~ModelTraining();
  ModelTraining(const ModelTraining&) = delete;
  ModelTraining& operator=(const ModelTraining&) = delete;

 private:
  ModelUse use_;
  ModelImpl& impl_;
  bool outermost_;
};

}  // namespace vae
