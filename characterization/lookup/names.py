"""Names of the built-in lookup tables, their attributes and common dimensions.

The contract is docs/lookup-format.md ("The built-in tables"). Writers and readers use these
constants instead of string literals, so a renamed table is renamed everywhere at once.
"""

from __future__ import annotations

# ---- dimensions -------------------------------------------------------------------------------
DIM_PROCESS = "process"
DIM_VDD_V = "vdd_v"
DIM_TEMP_C = "temp_c"
DIM_BITS = "bits"
DIM_MC = "mc"
DIM_INSTANCE = "instance"
DIM_CODE = "code"
DIM_STAT = "stat"
DIM_MODE = "mode"
DIM_LEVEL = "level"
DIM_SAMPLE = "sample"
#: The leading dimensions of every built-in table, and their coordinate units.
PVT = (DIM_PROCESS, DIM_VDD_V, DIM_TEMP_C)
PVT_UNITS = {DIM_PROCESS: "", DIM_VDD_V: "V", DIM_TEMP_C: "degC"}

# ---- crossbar tables (spicebridge characterize crossbar) --------------------------------------
CROSSBAR_READ_TRANSFER = "crossbar/read_transfer"
CROSSBAR_READ_NOISE = "crossbar/read_noise"
CROSSBAR_WRITE_NOISE = "crossbar/write_noise"
CROSSBAR_WRITE_NOISE_SAMPLES = "crossbar/write_noise_samples"
CROSSBAR_WRITE_NOISE_FIT = "crossbar/write_noise_fit"
CROSSBAR_SENSING_MARGIN = "crossbar/sensing_margin"
CROSSBAR_CELL_READ = "crossbar/cell_read"
CROSSBAR_WRITE_NOISE_LEVELS = "crossbar/write_noise_levels"
CROSSBAR_WRITE_VERIFY_FAILURE = "crossbar/write_verify_failure"
#: Energy per column read over the read window, split by ``part`` (array / tia / drivers).
CROSSBAR_READ_ENERGY = "crossbar/read_energy_j"
CROSSBAR_TABLES = (CROSSBAR_READ_TRANSFER, CROSSBAR_READ_NOISE, CROSSBAR_WRITE_NOISE,
                   CROSSBAR_WRITE_NOISE_SAMPLES, CROSSBAR_WRITE_NOISE_FIT,
                   CROSSBAR_SENSING_MARGIN, CROSSBAR_CELL_READ, CROSSBAR_WRITE_NOISE_LEVELS,
                   CROSSBAR_WRITE_VERIFY_FAILURE, CROSSBAR_READ_ENERGY)

# ---- ADC tables (spicebridge characterize adc) ------------------------------------------------
ADC_THRESHOLDS = "adc/thresholds"
ADC_OFFSET_LSB = "adc/offset_lsb"
ADC_NOISE_LSB = "adc/noise_lsb"
ADC_DNL = "adc/dnl"
ADC_INL = "adc/inl"
ADC_ENOB = "adc/enob"
ADC_SINAD_DB = "adc/sinad_db"
ADC_ENERGY_J = "adc/energy_j"
ADC_CONVERSION_TIME_S = "adc/conversion_time_s"
#: Designer-only (comparator-noise code-error rate); the simulator does not read it, it draws
#: the comparator noise ``adc/noise_lsb`` itself (reading both would count the noise twice).
ADC_DECISION_ERROR = "adc/designer/decision_error"
ADC_ENERGY_BREAKDOWN_J = "adc/energy_breakdown_j"
ADC_VALIDATION_RMS_LSB = "adc/validation_rms_lsb"
ADC_VALIDATION_FLOOR_LSB = "adc/validation_floor_lsb"
ADC_VALIDATION_MAX_LSB = "adc/validation_max_lsb"
#: Sampling front end (sky130 switches, characterization/adc/sampling.py), per resolution.
ADC_SAMPLING_PEDESTAL_LSB = "adc/sampling/pedestal_lsb"
ADC_SAMPLING_GAIN_ERROR = "adc/sampling/gain_error"
ADC_SAMPLING_NOISE_LSB = "adc/sampling/noise_lsb"
ADC_SAMPLING_KTC_RATIO = "adc/sampling/ktc_ratio"
ADC_SAMPLING_TAU_TRACK_S = "adc/sampling/tau_track_s"
ADC_SAMPLING_TAU_DAC_S = "adc/sampling/tau_dac_s"
ADC_SAMPLING_FIT_RMS_LSB = "adc/sampling/fit_rms_lsb"
ADC_SAMPLING_TABLES = (ADC_SAMPLING_PEDESTAL_LSB, ADC_SAMPLING_GAIN_ERROR,
                       ADC_SAMPLING_NOISE_LSB, ADC_SAMPLING_KTC_RATIO, ADC_SAMPLING_TAU_TRACK_S,
                       ADC_SAMPLING_TAU_DAC_S, ADC_SAMPLING_FIT_RMS_LSB)
DIM_PART = "part"
#: Prefix of the per-instance comparator records (``adc/records/cmp_offset_v`` ...).
ADC_RECORDS = "adc/records"
ADC_TABLES = (ADC_THRESHOLDS, ADC_OFFSET_LSB, ADC_NOISE_LSB, ADC_DNL, ADC_INL, ADC_ENOB,
              ADC_SINAD_DB, ADC_ENERGY_J, ADC_CONVERSION_TIME_S, ADC_DECISION_ERROR,
              ADC_ENERGY_BREAKDOWN_J, ADC_VALIDATION_RMS_LSB, ADC_VALIDATION_FLOOR_LSB,
              ADC_VALIDATION_MAX_LSB, *ADC_SAMPLING_TABLES)

# ---- table attributes -------------------------------------------------------------------------
ATTR_DESCRIPTION = "description"  # stored as the CF attribute long_name
ATTR_G_MIN_S = "g_min_s"
ATTR_G_MAX_S = "g_max_s"
ATTR_LEVELS = "levels"
ATTR_ROWS = "rows"
ATTR_V_READ_V = "v_read_v"
ATTR_VREF_V = "vref_v"
ATTR_FULL_SCALE_V = "full_scale_v"
ATTR_THRESHOLD_CONVENTION = "threshold_convention"
ATTR_IDEAL_THRESHOLD_K_MINUS = "ideal_threshold_k_minus"
