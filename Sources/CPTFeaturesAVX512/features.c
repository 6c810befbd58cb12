// Data only (no code runs from here): compiled with the avx512 level's CPU, so the compiler's predefined
// feature macros give the list the start-up check tests the running CPU against.
#include "CPTFeaturesAVX512.h"

const char pt_level_features_avx512[] =
#include "../CPTSupport/include/pt_feature_list.inc"
;
