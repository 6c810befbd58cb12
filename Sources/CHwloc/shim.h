// hwloc: topology discovery and CPU binding.
#include <hwloc.h>
