<?php

use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\Schema;

class CreateCallsTable extends Migration
{
    public function up()
    {
        Schema::create('calls', function (Blueprint $table) {
            $table->id();
            $table->string('uniqueid')->nullable()->index();
            $table->string('linkedid')->nullable()->index();
            $table->string('channel')->nullable();
            $table->string('extension')->nullable();
            $table->string('caller')->nullable();
            $table->string('server')->nullable();
            $table->string('status')->default('ringing');
            $table->timestamp('started_at')->nullable();
            $table->timestamp('answered_at')->nullable();
            $table->timestamp('ended_at')->nullable();
            $table->string('hangup_cause')->nullable();
            $table->integer('talk_seconds')->nullable();
            $table->timestamps();
        });
    }

    public function down()
    {
        Schema::dropIfExists('calls');
    }
}
