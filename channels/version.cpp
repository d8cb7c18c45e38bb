// SPDX-License-Identifier: Apache-2.0
#include "shmchan/version.hpp"

namespace shmchan {

const char* version() noexcept { return SHMCHAN_VERSION_STRING; }

}  // namespace shmchan
