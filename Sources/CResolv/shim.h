#include <resolv.h>
