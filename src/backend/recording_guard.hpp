// What a recorded training step may not do, checked on every backend.
//
// While Backend::capture records a step into a CUDA graph (and, on the CPU, while a recording
// replays), an allocation, a copy between host and device, or a wait for the device is a bug: on
// CUDA it fails the capture at best, and at worst is recorded with its arguments frozen. The
// trainer's own tests run on the CPU, so the check lives here, where they exercise it: Tensor,
// DeviceArray, Backend::make_readback and Backend::synchronize call forbid_while_recording().
#pragma once

namespace vae {

// Marks this thread as recording for its lifetime (nests).
class RecordingScope {
 public:
  RecordingScope();
  ~RecordingScope();
  RecordingScope(const RecordingScope&) = delete;
  RecordingScope& operator=(const RecordingScope&) = delete;

 private:
  bool outer_;
};

// Throws vae::Error naming `what` when this thread is recording a step.
void forbid_while_recording(const char* what);

}  // namespace vae
