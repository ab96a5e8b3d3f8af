// The whole public C++ API of softzo.
#ifndef SOFTZO_SOFTZO_H_
#define SOFTZO_SOFTZO_H_

#include "softzo/losses.h"
#include "softzo/runtime.h"
#include "softzo/softmax.h"
#include "softzo/zo.h"

#endif  // SOFTZO_SOFTZO_H_
