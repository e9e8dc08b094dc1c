/* Example crash in C: a sensor reading is written through a calibration table that was never
 * loaded (a NULL pointer), three calls below main. Built by scripts/demo.sh with -g -O1. */
#include <stdio.h>
#include <stdlib.h>

struct calibration {
	int offset[8];
};

struct calibration *table; /* never loaded: the bug (global, so the compiler cannot assume it) */

__attribute__((noinline)) static void store_reading(struct calibration *cal, int channel, int raw)
{
	cal->offset[channel] = raw - 512; /* SIGSEGV: cal is NULL */
}

__attribute__((noinline)) static void calibrate(int channel, int raw)
{
	store_reading(table, channel, raw);
	printf("channel %d calibrated\n", channel);
}

__attribute__((noinline)) static void poll_sensors(int channels)
{
	for (int c = 0; c < channels; c++)
		calibrate(c, 600 + c);
}

int main(int argc, char **argv)
{
	int channels = argc > 1 ? atoi(argv[1]) : 4;
	poll_sensors(channels);
	return 0;
}
