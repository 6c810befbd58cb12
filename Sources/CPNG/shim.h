// libpng (1.6, the simplified png_image API), for image folders.
#include <png.h>
