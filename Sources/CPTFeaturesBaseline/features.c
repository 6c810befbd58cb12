// Data only (no code runs from here): compiled with the baseline level's CPU, so the compiler's predefined
// feature macros give the list the start-up check tests the running CPU against.
#include "CPTFeaturesBaseline.h"

const char pt_level_features_baseline[] =
#include "../CPTSupport/include/pt_feature_list.inc"
;
