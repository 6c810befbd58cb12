// libjpeg-turbo's TurboJPEG API, for JPEG files in image folders.
#include <turbojpeg.h>
